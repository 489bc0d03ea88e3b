"""Errors whose message is meant for the user: what is wrong and what to do."""


class LabError(Exception):
    """Base class: str(error) is shown to the user as it is."""


class DataError(LabError):
    pass


class ModelError(LabError):
    pass


class JobError(LabError):
    pass


class DiskFullError(LabError, OSError):
    """The disk holding LLM_LAB_HOME is full (store.storage_full_message says where and what to do). An OSError
    too (errno ENOSPC), so code that handles a full disk as an OSError still does."""

    def __init__(self, message: str):
        super().__init__(28, message)  # errno.ENOSPC

    def __str__(self) -> str:
        return self.strerror


class JobCancelled(Exception):
    """Raised inside a job when the user asked to cancel it."""


class JobInterrupted(JobCancelled):
    """Raised inside a job when its worker is stopping (the dashboard that started it is gone): the job ends
    `interrupted`, to be resumed from its last checkpoint. Code that stops on JobCancelled stops on it too."""


# ---------------------------------------------------------------- messages for failures
OOM_ADVICE = ("The device ran out of memory. Try a smaller batch size or a shorter maximum length, "
              "or free the GPU.")


def is_disk_full(exc: BaseException) -> bool:
    """True for "No space left on device" (errno 28), however it was wrapped."""
    return isinstance(exc, OSError) and getattr(exc, "errno", None) == 28 or "No space left" in str(exc)


def technical(exc: BaseException) -> str:
    """`TypeName: message`, the part of a failure message for whoever reads the log."""
    return f"{type(exc).__name__}: {exc}"


def disk_full_message(folder, exc: BaseException, then: str = "") -> str:
    """What to do when the disk filled up under `folder`; `then` says what resuming does."""
    return f"The disk is full: free space under {folder} and resume the job{'; ' + then if then else ''}. ({technical(exc)})"


def failure_message(exc: BaseException, oom_advice: str = OOM_ADVICE, disk_folder=None, unexpected: str = "") -> str:
    """The message a user sees for a failure.

    A LabError's own message as it is; out of memory: `oom_advice` then the technical text in
    brackets; a full disk (when `disk_folder` is given): `disk_full_message`; anything else:
    `unexpected` (e.g. "Unexpected error, see the job log. ") then `TypeName: message`.
    """
    from .device import is_out_of_memory

    if isinstance(exc, LabError):
        return str(exc)
    if is_out_of_memory(exc):
        return f"{oom_advice} ({technical(exc)})"
    if disk_folder is not None and is_disk_full(exc):
        return disk_full_message(disk_folder, exc)
    return unexpected + technical(exc)
