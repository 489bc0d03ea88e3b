"""JobReporterCallback under a real HF Trainer: what the live panel reads for a step is that step's numbers."""
from llm_lab.access import LOCAL
from llm_lab import registry
from llm_lab.train import TrainConfig, runner


class Recorder:
    """A reporter that keeps every call (the JobContext interface: progress, metric, log)."""

    def __init__(self):
        self.progress_calls, self.metrics = [], {}

    def progress(self, done, total, message="", force=False, **stats):
        self.progress_calls.append((done, total, message, stats))

    def metric(self, step, **values):
        self.metrics.setdefault(step, {}).update(values)

    def log(self, line):
        pass


def test_progress_of_a_logged_step_shows_that_steps_loss_and_lr(tiny_bert, tmp_path):
    registry.register(LOCAL, registry.ModelEntry("tiny-bert-cb", "local", str(tiny_bert), "classifier"))
    cfg = TrainConfig(task="classify", model="tiny-bert-cb", dataset="demo-reviews", max_steps=6, batch_size=4,
                      learning_rate=1e-3, logging_steps=2, warmup=0, device="cpu")
    reporter = Recorder()
    runner.train(LOCAL, cfg, reporter, tmp_path)
    logged = {step: values for step, values in reporter.metrics.items() if "train_loss" in values}
    assert sorted(logged) == [2, 4, 6]
    shown = {stats["step"]: (message, stats) for _, _, message, stats in reporter.progress_calls if stats}
    assert sorted(shown) == [1, 2, 3, 4, 5, 6]  # every step is reported once
    for step, values in logged.items():
        message, stats = shown[step]
        assert stats["loss"] == round(values["train_loss"], 4), (step, stats, values)
        assert stats["lr"] == float(f"{values['lr']:.3g}"), (step, stats, values)
        assert message.endswith(f"step {step}/6 · loss {values['train_loss']:.4f}")
    # a step between two logs shows the latest loss logged before it
    assert shown[3][1]["loss"] == round(logged[2]["train_loss"], 4) and "loss" not in shown[1][1]
