"""The bridge from HF Trainer to a JobContext: progress, curves, log lines, cancel and NaN guard.

Anything with `progress(done, total, message, **stats)`, `metric(step, **values)` and
`log(line)` works as the reporter: a JobContext in the worker, `ConsoleReporter` under
`accelerate launch`. Only the main process reports.
"""
import math
import sys
import time

from transformers import TrainerCallback


class ConsoleReporter:
    """Reporter for runs outside the job system (accelerate launch / torchrun): the log lines are the curves."""

    def progress(self, done, total, message="", force=False, **stats):
        print(f"\r{message}", end="\n" if done >= total else "", file=sys.stderr, flush=True)

    def metric(self, step, **values):
        pass

    def log(self, line):
        print(line, file=sys.stderr, flush=True)


class JobReporterCallback(TrainerCallback):
    def __init__(self, reporter, samples_per_step: int, tokens_per_sample: float, perplexity: bool = False):
        self.reporter = reporter
        self.perplexity = perplexity
        self.samples_per_step = samples_per_step
        self.tokens_per_sample = tokens_per_sample
        self.last_loss: float | None = None
        self.last_lr: float | None = None
        self._report_at: int | None = None  # a step whose report waits for its on_log
        self.nan_step: int | None = None
        self._t0 = None
        self._step0 = 0

    # ---------------------------------------------------------------- timing
    def on_train_begin(self, args, state, control, **kwargs):
        self._t0, self._step0 = time.perf_counter(), state.global_step
        if state.is_world_process_zero:
            # a step budget decides the epochs (Trainer's count, rounded up), not the epochs setting it overrides
            epochs = f"within {state.num_train_epochs} epoch(s)" if args.max_steps > 0 else \
                f"{args.num_train_epochs:g} epoch(s)"
            self.reporter.log(f"Training {state.max_steps} steps ({epochs}), "
                              f"batch {args.per_device_train_batch_size} × accumulation "
                              f"{args.gradient_accumulation_steps} × {args.world_size} process(es)"
                              + (f", resuming at step {state.global_step}" if state.global_step else ""))

    def _rates(self, state) -> tuple[float, float]:
        elapsed = time.perf_counter() - (self._t0 or time.perf_counter())
        steps = state.global_step - self._step0
        samples = steps * self.samples_per_step / elapsed if elapsed > 0 and steps else 0.0
        return samples, samples * self.tokens_per_sample

    # ---------------------------------------------------------------- per step
    # HF Trainer calls on_step_end before it logs that step (on_log): a step that logs is reported from on_log,
    # with its own loss and learning rate; the others from on_step_end, with the latest ones logged.
    def on_step_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if control.should_log:  # set by DefaultFlowCallback, which runs first; on_log of this step follows
            self._report_at = state.global_step
            return
        self._report(state)

    def _report(self, state) -> None:
        samples, tokens = self._rates(state)
        stats = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 2)}
        if self.last_loss is not None:
            stats["loss"] = round(self.last_loss, 4)
        if self.last_lr is not None:
            stats["lr"] = float(f"{self.last_lr:.3g}")
        stats.update({"samples/s": round(samples, 1), "tokens/s": round(tokens)})
        loss = f" · loss {self.last_loss:.4f}" if self.last_loss is not None else ""
        self.reporter.progress(state.global_step, state.max_steps,
                               f"epoch {state.epoch or 0:.2f} · step {state.global_step}/{state.max_steps}{loss}",
                               **stats)  # raises JobCancelled when the user cancels

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        step = state.global_step
        if "loss" in logs:
            loss = float(logs["loss"])
            if not math.isfinite(loss):
                self.nan_step = step
                control.should_training_stop = True
                control.should_save = False        # never checkpoint the broken weights
                control.should_evaluate = False
                if state.is_world_process_zero:
                    self.reporter.log(f"step {step}: training loss is {loss}; stopping.")
                return control
            self.last_loss = loss
        if not state.is_world_process_zero:
            return control
        values = {}
        if "loss" in logs:
            values["train_loss"] = logs["loss"]
        if "learning_rate" in logs:
            values["lr"] = logs["learning_rate"]
        if "grad_norm" in logs and logs["grad_norm"] is not None and math.isfinite(float(logs["grad_norm"])):
            values["grad_norm"] = logs["grad_norm"]
        for key in ("kd_loss", "ce_loss"):  # a distillation's two terms (train.distill.DistillTrainer)
            if key in logs:
                values[key] = logs[key]
        for key, value in logs.items():
            if key.startswith("eval_") and isinstance(value, (int, float)) and not key.endswith(
                    ("_runtime", "_per_second", "_steps_per_second")):
                values[key] = value
        if self.perplexity and "eval_loss" in values:
            values["eval_perplexity"] = math.exp(min(float(values["eval_loss"]), 50))
        if "learning_rate" in logs:
            self.last_lr = float(logs["learning_rate"])
        if values:
            self.reporter.metric(step, epoch=state.epoch, **values)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            self.reporter.log(f"step {step} · epoch {state.epoch or 0:.2f} · {shown}")
        if self._report_at == step:
            self._report_at = None
            self._report(state)
        return control

    def on_step_end_guard(self, control):
        if self.nan_step is not None:
            control.should_save = control.should_evaluate = False
            control.should_training_stop = True

    def on_epoch_end(self, args, state, control, **kwargs):
        self.on_step_end_guard(control)
        return control

    def on_save(self, args, state, control, **kwargs):
        if self.nan_step is None and state.is_world_process_zero:
            self.reporter.log(f"checkpoint saved at step {state.global_step}")
        return control
