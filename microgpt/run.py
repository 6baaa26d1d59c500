"""A training run as the library runs it: its directory, checkpoints, logs, evaluations and signals.

    with RunDirectory.create("runs/names") as directory:       # or RunDirectory.open(...) to resume
        outcome = train_run(backend, run, data, directory, RunOptions())

`train.train_steps` is the bare loop; this module wraps it with everything a run
needs so that nothing is ever lost:

- **The directory** holds one run. A new run goes only into a new or empty
  directory (or one an earlier microgpt run made and never saved a checkpoint in),
  never over someone's files. While a run trains or resumes, the directory is
  locked: a second process gets one line and changes nothing.
- **Checkpoints** are saved every `save_every` steps and when training stops, and
  only if the model is still good: finite weights and Adam state (the optimizer step
  checks), and finite predictions on a probe sequence. The best checkpoint by
  validation loss is kept in best/.
- **Logs**: log.csv gets a row per step, eval.csv a row per evaluation (the loss on
  a fixed validation sample and on a training sample of the same size, forward only).
- **Signals**: the first Ctrl-C (SIGINT), SIGTERM or SIGHUP lets the step in
  progress finish, saves, and returns status "interrupted" with the signal, so the
  caller can say how to resume and exit with 128 + the signal's number. A second
  one acts at once.
- **Divergence** (a loss, gradient or update that is not finite) ends the run with
  `Diverged`; the diverged state is never saved, and the last good checkpoint stays.
"""

import contextlib
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from microgpt.baselines import baseline_losses
from microgpt.checkpoint import BEST, CHECKPOINT_JSON, atomic_write, save_checkpoint
from microgpt.errors import MicrogptError, UsageError
from microgpt.evaluate import evaluate
from microgpt.runlog import EVAL_COLUMNS, STEP_COLUMNS, open_log, read_log
from microgpt.train import Diverged, train_steps

try:
    import fcntl
except ImportError:     # Windows: no advisory locks; the directory checks still apply
    fcntl = None

MARKER = ".microgpt-run"    # an empty file: "microgpt made this directory"
LOCK = ".lock"              # locked (flock) while a process trains in the directory
BASELINES = "baselines.json"
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
TEXT_SAMPLE_CHARS = 200     # the length of a text sample printed while (and after) training


# ------------------------------------------------------------------ the directory

class RunDirectory:
    """A run directory, locked for this process while it is open."""

    def __init__(self, path):
        self.path = path
        self._lock_fd = None

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def best(self):
        return self.file(BEST)

    @classmethod
    def create(cls, path):
        """A directory for a new run: new, empty, or made by microgpt for a run that saved no checkpoint."""
        if os.path.exists(path) and not os.path.isdir(path):
            raise UsageError(f"--out {path} is a file; give a directory")
        _refuse_unless_free(path)                   # before creating anything, so a refusal changes nothing
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create the run directory {path} ({_reason(e)}); "
                             f"choose a directory you can write to with --out") from None
        directory = cls(path)
        directory._lock(for_resume=False)
        try:
            _refuse_unless_free(path)               # again, now that we hold the lock: another run may have won
            atomic_write(directory.file(MARKER), lambda f: None)
        except BaseException:
            directory.close()
            raise
        return directory

    @classmethod
    def open(cls, path):
        """The directory of an existing run, to resume it."""
        if not os.path.isdir(path):
            raise MicrogptError(f"{path} is not a run directory; give the --out directory of a train run")
        directory = cls(path)
        directory._lock(for_resume=True)
        return directory

    def _lock(self, for_resume):
        try:
            fd = os.open(self.file(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            advice = ("a resumed run saves its checkpoints there: make it writable, or copy the run "
                      "directory somewhere writable and resume the copy" if for_resume
                      else "choose a directory you can write to with --out")
            raise UsageError(f"cannot write to the run directory {self.path} ({_reason(e)}); {advice}") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                os.close(fd)
                raise MicrogptError(f"{self.path} is in use by another microgpt process"
                                    f"{f' (pid {owner})' if owner.isdigit() else ''}; wait for it to finish, "
                                    f"or train somewhere else with --out") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        self._lock_fd = fd

    def close(self):
        """Release the lock (the lock file stays: removing it would race with a process waiting on it)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _refuse_unless_free(path):
    """UsageError unless `path` may receive a new run (see RunDirectory.create)."""
    if not os.path.isdir(path):
        return
    names = set(os.listdir(path)) - {LOCK}
    if CHECKPOINT_JSON in names:
        raise UsageError(f"{path} already holds a run; continue it with --resume {path}, "
                         f"or choose another --out (nothing was changed)")
    ours = MARKER in names and not any(n.startswith("weights-") for n in names)
    if names and not ours:
        shown = ", ".join(sorted(names)[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise UsageError(f"{path} is not empty (it holds {shown}); a new run goes into a new or empty "
                         f"directory: choose another --out (nothing was changed)")


def default_run_dir(data_path):
    """runs/<file stem>, or runs/<stem>-2, -3 ... if that is taken: never over an earlier run."""
    stem = os.path.splitext(os.path.basename(data_path))[0] or "run"
    candidate, n = os.path.join("runs", stem), 1
    while os.path.exists(candidate):
        n += 1
        candidate = os.path.join("runs", f"{stem}-{n}")
    return candidate


def _reason(e):
    return e.strerror or str(e) or type(e).__name__


# ------------------------------------------------------------------ training

@dataclass
class RunOptions:
    """How to run (not what: that is in the checkpoint's configs)."""

    stop_step: int = None      # stop and save after this step (None: at the end) to continue later
    save_every: int = 100      # also save a checkpoint every this many steps; 0: only when training stops
    sample_every: int = 0      # print a few samples every this many steps; 0: never
    num_samples: int = 3       # how many names (or one text of sample_chars) each time
    sample_chars: int = TEXT_SAMPLE_CHARS
    temperature: float = 0.5
    progress: bool = True      # a progress bar on stderr


@dataclass
class Evaluation:
    step: int
    train_loss: float
    val_loss: float


@dataclass
class TrainOutcome:
    status: str                                       # "done", "stopped" (at stop_step) or "interrupted"
    step: int                                         # steps completed, all saved in the checkpoint
    signal: int = None                                # the signal that interrupted, if any
    results: list = field(default_factory=list)       # StepResults of this call
    evaluations: list = field(default_factory=list)   # Evaluations of this call
    best: Evaluation = None                           # the best evaluation of the whole run so far
    baselines: dict = None                            # {"uniform", "unigram", "bigram"} on the val sample

    @property
    def exit_code(self):
        return 128 + self.signal if self.signal else 0


def eval_steps(config, start, stop):
    """The steps in start..stop at which to evaluate: 0, every eval_every, and the last step of the run."""
    if not config.eval_every:
        return set()
    steps = set(range(0, config.steps + 1, config.eval_every)) | {config.steps}
    return {s for s in steps if start <= s <= stop}


def train_run(backend, run, data, directory, options, say=print):
    """Advance `run` (a checkpoint.Checkpoint) on `data` from run.step towards its TrainConfig.steps.

    `say(line)` prints a line (above the progress bar). Returns a TrainOutcome;
    raises Diverged, keeping the last good checkpoint, if training diverges.
    """
    trainer = _Trainer(backend, run, data, directory, options, say)
    with stop_signals() as stop:
        try:
            return trainer.train(stop)
        finally:
            trainer.close()


class _Trainer:
    """The state of one call of train_run; its methods are the steps of a run, in order."""

    def __init__(self, backend, run, data, directory, options, say):
        self.backend, self.run, self.data, self.directory, self.options = backend, run, data, directory, options
        config = run.train_config
        self.stop_step = config.steps if options.stop_step is None else min(options.stop_step, config.steps)
        self.outcome = TrainOutcome("done" if self.stop_step == config.steps else "stopped", run.step)
        self.last_saved = run.step if run.step > 0 else None
        self.eval_at = eval_steps(config, run.step, self.stop_step) if data.spec.val_fraction else set()
        self.samples = ({"val": data.eval_sample("val", config.eval_tokens),
                         "train": data.eval_sample("train", config.eval_tokens)} if self.eval_at else None)
        self.best = _best_so_far(directory.best)
        self.bar = _progress_bar(run.step, self.stop_step, options.progress)
        self.say = _above(self.bar, say)
        self.exits = contextlib.ExitStack()

    def close(self):
        self.bar.close()
        self.exits.close()

    def train(self, stop):
        log = self.exits.enter_context(open_log(self.directory.file("log.csv"), STEP_COLUMNS, self.run.step))
        evals = self.exits.enter_context(open_log(self.directory.file("eval.csv"), EVAL_COLUMNS, self.run.step))
        started = time.perf_counter() - _last_seconds(self.directory.file("log.csv"))
        self.outcome.baselines = self._write_baselines()
        try:
            if self.run.step == 0 and 0 in self.eval_at:   # a resumed run evaluated its step before saving it
                self._evaluate(evals, started)
            for result in train_steps(self.backend, self.run.params, self.run.optimizer, self.data,
                                      self.run.train_config, self.run.step, self.stop_step):
                self.run.step = self.outcome.step = result.step + 1
                self.outcome.results.append(result)
                log.write(step=self.run.step, loss=result.loss, lr=result.lr, grad_norm=result.grad_norm,
                          seconds=round(time.perf_counter() - started, 4))
                self._show(result)
                if self.run.step in self.eval_at:
                    self._evaluate(evals, started)
                elif self._sampling_now():
                    self.say(f"step {self.run.step}: {self._samples_text()}")
                if stop.signum:
                    break
                if self.options.save_every and self.run.step % self.options.save_every == 0 \
                        and self.run.step < self.stop_step:
                    self._save()
            self._save()
        except Diverged as e:
            kept = (f"the last good checkpoint (step {self.last_saved}) is kept in {self.directory.path}"
                    if self.last_saved else "no checkpoint had been saved yet")
            raise Diverged(f"{e}; {kept}", e.step, e.params) from None
        if stop.signum:                     # also when the signal came during the final save
            self.outcome.status, self.outcome.signal = "interrupted", stop.signum
        self.outcome.best = self.best
        return self.outcome

    # -------------------------------------------------------------- the pieces

    def _show(self, result):
        self.smoothed = result.loss if not self.outcome.results[:-1] else 0.95 * self.smoothed + 0.05 * result.loss
        val = f" · val {self.outcome.evaluations[-1].val_loss:.4f}" if self.outcome.evaluations else ""
        self.bar.set_postfix_str(f"loss {self.smoothed:.4f}{val}", refresh=False)
        self.bar.update(1)

    def _evaluate(self, evals, started):
        """Measure both samples, log them, keep the best checkpoint, and say so (with samples if due)."""
        run = self.run
        val_loss = self._loss(self.samples["val"])
        train_loss = self._loss(self.samples["train"])
        evaluation = Evaluation(run.step, train_loss, val_loss)
        self.outcome.evaluations.append(evaluation)
        evals.write(step=run.step, train_loss=train_loss, val_loss=val_loss,
                    seconds=round(time.perf_counter() - started, 4))
        improved = run.step > 0 and (self.best is None or val_loss < self.best.val_loss)
        if improved:
            self.best = evaluation
            run.metrics = {"train_loss": train_loss, "val_loss": val_loss}
            save_checkpoint(self.directory.best, run)
        line = f"step {run.step}: train {train_loss:.4f} · val {val_loss:.4f}{' (best)' if improved else ''}"
        if self._sampling_now():
            line += f" · {self._samples_text()}"
        self.say(line)

    def _loss(self, sequences):
        try:
            loss = evaluate(self.backend, self.run.params, sequences)
        except ArithmeticError as e:
            raise Diverged(f"training diverged by step {self.run.step}: {e}; try a lower --lr", self.run.step) from None
        if not math.isfinite(loss):
            raise Diverged(f"training diverged by step {self.run.step}: the evaluation loss is {loss}; "
                           f"try a lower --lr", self.run.step)
        return loss

    def _sampling_now(self):
        every = self.options.sample_every
        return bool(every) and self.run.step > 0 and self.run.step % every == 0

    def _samples_text(self):
        from microgpt.generate import default_prompt, generate_many
        tokenizer, seed = self.data.tokenizer, [self.run.train_config.seed, self.run.step]
        if tokenizer.bos is not None:
            names = generate_many(self.backend, self.run.params, tokenizer, self.options.num_samples, seed=seed,
                                  temperature=self.options.temperature)
            return "samples: " + ", ".join(f"{name} ({self.data.membership(name)})" for name in names)
        text, = generate_many(self.backend, self.run.params, tokenizer, 1, seed=seed,
                              temperature=self.options.temperature, prompt=default_prompt(tokenizer),
                              max_new_tokens=self.options.sample_chars)
        return "sample:\n" + "\n".join("    " + line for line in text.strip("\n").splitlines())

    def _save(self):
        """Save the latest checkpoint if training could go on from it (else Diverged: the last good one stays).

        Finite weights and Adam state are not enough: weights of 1e200 are finite, yet
        their products overflow. So the checkpoint must give a finite loss and gradient
        on the batch that comes next, the very computation resuming would start with.
        """
        config = self.run.train_config
        try:
            loss, grads = self.backend.loss_and_grads(self.run.params,
                                                      self.data.batch(self.run.step, config.batch_size, config.seed))
            good = math.isfinite(loss) and bool(np.isfinite(grads).all())
        except ArithmeticError:
            good = False
        if not good:
            raise Diverged(f"training diverged at step {self.run.step}: the weights it reached give a non-finite "
                           f"loss or gradient (they have grown too large); try a lower --lr", self.run.step)
        self.run.metrics = None
        save_checkpoint(self.directory.path, self.run)
        self.last_saved = self.run.step

    def _write_baselines(self):
        """The yardsticks on the validation sample, also written to baselines.json for plots and `compare`."""
        if not self.samples:
            return None
        baselines = baseline_losses(self.data, self.samples["val"])
        text = json.dumps(baselines, indent=2) + "\n"
        atomic_write(self.directory.file(BASELINES), lambda f: f.write(text.encode("utf-8")))
        return baselines


def _best_so_far(best_dir):
    """The Evaluation recorded in best/checkpoint.json, or None (missing or unreadable: no best yet)."""
    try:
        with open(os.path.join(best_dir, CHECKPOINT_JSON), encoding="utf-8") as f:
            meta = json.load(f)
        metrics = meta["metrics"]
        return Evaluation(int(meta["step"]), float(metrics["train_loss"]), float(metrics["val_loss"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _last_seconds(log_path):
    """The `seconds` of the last row of a log (0 if none): the time column keeps growing across a resume."""
    seconds = read_log(log_path).get("seconds", np.zeros(0))
    seconds = seconds[np.isfinite(seconds)]
    return float(seconds[-1]) if seconds.size else 0.0


def read_baselines(run_dir):
    """The run's baselines.json as a dict, or None."""
    try:
        with open(os.path.join(run_dir, BASELINES), encoding="utf-8") as f:
            data = json.load(f)
        return {str(k): float(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def _progress_bar(start, stop, enabled):
    from tqdm import tqdm
    return tqdm(initial=start, total=stop, disable=not enabled, unit="step", dynamic_ncols=True)


def _above(bar, say):
    """`say`, printing above the progress bar instead of through it."""
    def write(line):
        with bar.external_write_mode():
            say(line)
    return write


# ------------------------------------------------------------------ signals

@contextlib.contextmanager
def stop_signals():
    """Inside, the first SIGINT (Ctrl-C), SIGTERM or SIGHUP only sets `.signum`, so the step in
    progress can finish and a consistent checkpoint be saved; a second one acts as usual at once.

    Only the main thread can take signals; elsewhere this changes nothing.
    """
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    names = [name for name in STOP_SIGNALS if hasattr(signal, name)]
    previous = {name: signal.getsignal(getattr(signal, name)) for name in names}
    wanted = [name for name in names if previous[name] not in (signal.SIG_IGN, None)]

    def handler(signum, frame):
        flag.signum = flag.signum or signum
        for name in wanted:                         # the next one gets the usual treatment
            signal.signal(getattr(signal, name), previous[name])

    for name in wanted:
        signal.signal(getattr(signal, name), handler)
    try:
        yield flag
    finally:
        for name in wanted:
            signal.signal(getattr(signal, name), previous[name])


class _StopFlag:
    signum = 0


def signal_name(signum):
    """"Ctrl-C" for SIGINT, else the signal's name."""
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
