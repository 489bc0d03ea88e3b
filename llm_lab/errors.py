"""Errors whose message is meant for the user: what is wrong and what to do."""


class LabError(Exception):
    """Base class: str(error) is shown to the user as it is."""


class DataError(LabError):
    pass


class ModelError(LabError):
    pass


class JobError(LabError):
    pass


class JobCancelled(Exception):
    """Raised inside a job when the user asked to cancel it."""
