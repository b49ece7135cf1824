"""The log-friendly progress bar, its selection rule and the end-of-fit summary (video_gn.callbacks).

Tiny CPU fits on random tensors: a Trainer run here takes well under a second.
"""

from __future__ import annotations

import io
import math
import re
import sys
import warnings
from types import SimpleNamespace
from unittest import mock

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from video_gn import progress_bar
from video_gn.callbacks import FitSummary
from video_gn.progress_bar import SilentProgressBar, TextProgressBar, progress_bar_callback, run_totals


class TinyModule(L.LightningModule):
    """Logs what VideoClassifier logs (train/loss on the bar, val|test/loss and video top-1)."""

    def __init__(self, fail_at_step: int | None = None) -> None:
        super().__init__()
        self.net = torch.nn.Linear(8, 4)
        self.fail_at_step = fail_at_step

    def training_step(self, batch, batch_idx):
        if self.fail_at_step is not None and self.global_step >= self.fail_at_step:
            raise RuntimeError("boom")
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _eval(self, batch, stage: str) -> None:
        x, y = batch
        out = self.net(x)
        self.log(f"{stage}/loss", torch.nn.functional.cross_entropy(out, y))
        self.log(f"{stage}/video_top1", (out.argmax(1) == y).float().mean(), prog_bar=True)

    def validation_step(self, batch, batch_idx):
        self._eval(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval(batch, "test")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(n: int) -> DataLoader:
    g = torch.Generator().manual_seed(n)
    return DataLoader(
        TensorDataset(torch.randn(n, 8, generator=g), torch.randint(0, 4, (n,), generator=g)), 4
    )


class _Unsized(IterableDataset):
    def __iter__(self):
        for _ in range(3):
            yield torch.randn(8), torch.randint(0, 4, ())


def _trainer(tmp_path, callbacks_: list, **kwargs) -> L.Trainer:
    options = dict(
        default_root_dir=tmp_path,
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    options.update(kwargs)
    return L.Trainer(callbacks=callbacks_, enable_progress_bar=True, **options)


@pytest.fixture(autouse=True)
def _no_progress_env(monkeypatch):
    for name in ("VIDEO_GN_PROGRESS", "VIDEO_GN_PROGRESS_INTERVAL"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------------------------- text bar


def test_text_bar_writes_totals_rates_etas_and_validation_metrics(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIDEO_GN_PROGRESS_INTERVAL", "0")  # a line per batch
    bar = TextProgressBar()  # stream: sys.stderr, as the data scripts' progress lines
    assert bar.interval == 0
    trainer = _trainer(tmp_path, [bar])
    trainer.fit(TinyModule(), _loader(20), _loader(8))
    assert trainer.progress_bar_callback is bar
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith(("fit:", "epoch", "valid"))]

    assert lines[0].startswith("fit: 2 epochs x 5 train batches = 10 optimizer steps | a line every 0 s")
    train = [ln for ln in lines if ln.startswith("epoch ")]
    assert len(train) == 10  # interval 0: every batch
    first = train[0]
    assert first.startswith("epoch 1/2 batch 1/5 (20.0%) | ")
    assert re.search(r"\| [\d.]+ (it/s|s/it) \| epoch ETA \d+:\d\d:\d\d \| step 1/10 \(10\.0%\)", first)
    assert re.search(r"\| elapsed \d+:\d\d:\d\d \| run ETA \d+:\d\d:\d\d \| train/loss \d\.\d+", first)
    assert "v_num" not in first and "\r" not in first
    assert train[-1].startswith("epoch 2/2 batch 5/5 (100.0%)")
    assert "step 10/10 (100.0%)" in train[-1] and "run ETA 0:00:00" in train[-1]
    assert "val/video_top1" in train[-1]  # prog_bar metrics of the last validation

    done = [ln for ln in lines if " done: " in ln]
    assert len(done) == 2
    assert done[0].startswith("validation (epoch 1, step 5) done: 2 batches in ")
    assert re.search(r"\| val/loss \d\.\d+ \| val/video_top1 [\d.]+$", done[0])
    assert "train/loss" not in done[0]
    # The validation comes after the epoch's last batch line.
    assert lines.index(done[0]) > lines.index(train[4])


def test_text_bar_interval_keeps_only_epoch_end_and_validation_lines(tmp_path):
    out = io.StringIO()
    trainer = _trainer(tmp_path, [TextProgressBar(interval=1e9, stream=out)])
    trainer.fit(TinyModule(), _loader(20), _loader(8))
    lines = out.getvalue().splitlines()
    assert [re.sub(r" in \d+:\d\d:\d\d$", "", ln.split(" | ")[0]) for ln in lines] == [
        "fit: 2 epochs x 5 train batches = 10 optimizer steps",
        "epoch 1/2 batch 5/5 (100.0%)",
        "validation (epoch 1, step 5) done: 2 batches",
        "epoch 2/2 batch 5/5 (100.0%)",
        "validation (epoch 2, step 10) done: 2 batches",
    ]


def test_text_bar_epoch_cut_short_by_max_steps_still_gets_its_line(tmp_path):
    out = io.StringIO()
    trainer = _trainer(tmp_path, [TextProgressBar(interval=1e9, stream=out)], max_epochs=-1, max_steps=7)
    trainer.fit(TinyModule(), _loader(20), _loader(8))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("fit: 2 epochs x 5 train batches = 7 optimizer steps")
    assert lines[-1].startswith("epoch 2/2 batch 2/2 (100.0%)")
    assert "step 7/7 (100.0%)" in lines[-1]


def test_text_bar_unknown_totals_show_a_question_mark(tmp_path):
    out = io.StringIO()
    trainer = _trainer(tmp_path, [TextProgressBar(interval=0, stream=out)], max_epochs=1, limit_val_batches=0)
    trainer.fit(TinyModule(), DataLoader(_Unsized(), batch_size=1))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("fit: 1 epoch x ? train batches = ? optimizer steps")
    assert lines[1].startswith("epoch 1/1 batch 1/? | ")
    assert "epoch ETA ? | step 1/? | " in lines[1] and "run ETA ?" in lines[1]
    assert lines[-1].startswith("epoch 1/1 batch 3/? | ")
    assert "%" not in "".join(lines[1:])


def test_text_bar_after_a_mid_epoch_resume_knows_the_epoch_and_its_rate(tmp_path):
    # Lightning does not call on_train_epoch_start for the epoch a mid-epoch checkpoint re-enters.
    from lightning.pytorch.callbacks import ModelCheckpoint

    saver = ModelCheckpoint(dirpath=tmp_path, filename="mid", every_n_train_steps=2, save_top_k=-1)
    first = _trainer(
        tmp_path, [saver], max_epochs=1, max_steps=3, limit_val_batches=0, enable_checkpointing=True
    )
    first.fit(TinyModule(), _loader(20))  # mid.ckpt: written during training, after batch 2 of 5
    out = io.StringIO()
    second = _trainer(tmp_path, [TextProgressBar(interval=0, stream=out)], max_epochs=1, limit_val_batches=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ended before the epoch ended")
        second.fit(TinyModule(), _loader(20), ckpt_path=tmp_path / "mid.ckpt")
    lines = [line for line in out.getvalue().splitlines() if line.startswith("epoch 1/1 batch")]
    assert len(lines) == 3, lines  # batches 3, 4 and 5 of 5: one line each (interval 0)
    for n, line in zip(range(3, 6), lines):
        # a known rate (not "? it/s") and ETA, whatever the machine's speed: it/s, or s/it below one a second
        assert re.match(
            rf"epoch 1/1 batch {n}/5 \(\d+\.\d%\) \| \d+\.\d+ (it/s|s/it) \| epoch ETA \d+:\d\d:\d\d \| ",
            line,
        ), line


def test_text_bar_validate_and_test_write_progress_and_metrics(tmp_path):
    out = io.StringIO()
    trainer = _trainer(tmp_path, [TextProgressBar(interval=0, stream=out)])
    module = TinyModule()
    trainer.validate(module, _loader(12), verbose=False)
    trainer.test(module, _loader(8), verbose=False)
    lines = out.getvalue().splitlines()
    assert lines[0] == "validate: 3 batches"
    assert lines[1].startswith("validate 1/3 (33.3%) | ") and "| ETA " in lines[1]
    assert re.fullmatch(
        r"validate done: 3 batches in \d+:\d\d:\d\d \| val/loss [\d.]+ \| val/video_top1 [\d.]+", lines[4]
    )
    assert lines[5] == "test: 2 batches"
    assert re.fullmatch(
        r"test done: 2 batches in \d+:\d\d:\d\d \| test/loss [\d.]+ \| test/video_top1 [\d.]+", lines[-1]
    )


def test_text_bar_writes_on_global_rank_zero_only(tmp_path):
    out = io.StringIO()
    with mock.patch.object(L.Trainer, "is_global_zero", new_callable=mock.PropertyMock, return_value=False):
        trainer = _trainer(tmp_path, [TextProgressBar(interval=0, stream=out), FitSummary(stream=out)])
        trainer.fit(TinyModule(), _loader(8), _loader(4))
        trainer.validate(trainer.lightning_module, _loader(4), verbose=False)
    assert trainer.global_step == 4
    assert out.getvalue() == ""


def test_disabled_text_bar_writes_nothing(tmp_path):
    out = io.StringIO()
    bar = TextProgressBar(interval=0, stream=out)
    bar.disable()
    _trainer(tmp_path, [bar]).fit(TinyModule(), _loader(8), _loader(4))
    assert out.getvalue() == "" and bar.is_disabled


def test_interval_env_and_argument():
    with mock.patch.dict("os.environ", {"VIDEO_GN_PROGRESS_INTERVAL": "5"}):
        assert TextProgressBar().interval == 5.0
        assert TextProgressBar(interval=2).interval == 2.0
    assert TextProgressBar().interval == 30.0
    with pytest.raises(ValueError, match="interval"):
        TextProgressBar(interval=-1)


def test_number_formatting():
    assert (
        progress_bar.format_metric(1.23456) == "1.235"
        and progress_bar.format_metric(0.41234) == "0.4123"
        and progress_bar.format_metric(3) == "3"
    )
    assert progress_bar._rate(12.34) == "12.3 it/s" and progress_bar._rate(0.25) == "4.00 s/it"
    assert progress_bar._rate(None) == "? it/s"
    assert (
        progress_bar._metrics_text({"v/a": torch.tensor(0.5), "v/b": torch.ones(3), "w": 1.0}, "v")
        == "v/a 0.5"
    )


@pytest.mark.parametrize(
    ("batches", "accumulate", "max_epochs", "max_steps", "expected"),
    [
        (100, 1, 10, -1, (10, 1000)),
        (100, 1, -1, 250, (3, 250)),
        (100, 1, 10, 250, (3, 250)),
        (100, 3, 2, -1, (2, 68)),  # ceil(100 / 3) optimizer steps an epoch
        (math.inf, 1, 5, -1, (5, math.inf)),
        (math.inf, 1, -1, 40, (math.inf, 40)),
        (100, 1, -1, -1, (math.inf, math.inf)),
    ],
)
def test_run_totals(batches, accumulate, max_epochs, max_steps, expected):
    trainer = SimpleNamespace(
        num_training_batches=batches,
        accumulate_grad_batches=accumulate,
        max_epochs=max_epochs,
        max_steps=max_steps,
    )
    assert run_totals(trainer) == expected


# ----------------------------------------------------------------------------------------- selection


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("env", "terminal", "term", "expected"),
    [
        ("0", True, "xterm", SilentProgressBar),
        ("off", False, "xterm", SilentProgressBar),
        ("rich", False, "xterm", RichProgressBar),
        ("1", False, "dumb", RichProgressBar),
        ("text", True, "xterm", TextProgressBar),
        ("log", True, "xterm", TextProgressBar),
        (None, True, "xterm", RichProgressBar),
        (None, False, "xterm", TextProgressBar),
        (None, True, "dumb", TextProgressBar),
        (" Text ", True, "xterm", TextProgressBar),
    ],
)
def test_progress_bar_selection(monkeypatch, env, terminal, term, expected):
    if env is not None:
        monkeypatch.setenv("VIDEO_GN_PROGRESS", env)
    monkeypatch.setenv("TERM", term)
    monkeypatch.setattr(sys, "stdout", _Terminal() if terminal else io.StringIO())
    assert type(progress_bar_callback(True)) is expected
    assert progress_bar_callback(False) is None  # trainer.enable_progress_bar: false


def test_unknown_progress_env_warns_once_and_chooses_by_terminal(monkeypatch):
    import video_gn.data.progress as data_progress

    monkeypatch.setattr(data_progress, "_warned_values", set())
    monkeypatch.setenv("VIDEO_GN_PROGRESS", "verbose")
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert isinstance(progress_bar_callback(True), TextProgressBar)
        assert isinstance(progress_bar_callback(True), TextProgressBar)
    messages = [str(w.message) for w in caught if "VIDEO_GN_PROGRESS" in str(w.message)]
    assert len(messages) == 1
    assert "'verbose'" in messages[0] and all(v in messages[0] for v in ("rich", "text", "0"))


def test_progress_off_shows_no_bar_at_all(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIDEO_GN_PROGRESS", "0")
    bar = progress_bar_callback(True)
    trainer = _trainer(tmp_path, [bar])
    trainer.fit(TinyModule(), _loader(8), _loader(4))
    assert trainer.progress_bar_callback is bar  # Lightning added none of its own
    bar.enable()  # the tuner enables the bar after lr_find: it stays silent
    assert not bar.is_enabled
    captured = capsys.readouterr()
    assert "batch" not in captured.err + captured.out and "\r" not in captured.out


# -------------------------------------------------------------------------------------------- summary


def test_fit_summary_names_best_score_checkpoints_and_logs(tmp_path):
    out = io.StringIO()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val/video_top1", mode="max", save_last=True)
    logger = CSVLogger(tmp_path, name="logs")
    trainer = _trainer(tmp_path, [FitSummary(stream=out), ckpt], logger=logger, enable_checkpointing=True)
    trainer.fit(TinyModule(), _loader(8), _loader(8))
    lines = out.getvalue().splitlines()
    assert re.fullmatch(
        r"fit done in \d+:\d\d:\d\d: 4 optimizer steps, 2 epochs; max_epochs reached", lines[0]
    )
    assert lines[1] == f"best val/video_top1 {float(ckpt.best_model_score):.4g}: {ckpt.best_model_path}"
    assert ckpt.best_model_path.startswith(str(tmp_path / "ckpts"))
    assert lines[2] == f"last checkpoint: {tmp_path / 'ckpts' / 'last.ckpt'}"
    assert lines[3] == f"logs: {logger.log_dir}"
    assert lines[4] == f"evaluate: video-gn validate -c CONFIG --ckpt_path {ckpt.best_model_path}"

    # The saved CLI config is named when it is there; validate alone writes no summary.
    (tmp_path / "logs" / "version_0" / "config.yaml").write_text("{}")
    out.seek(0), out.truncate()
    trainer.validate(trainer.lightning_module, _loader(4), verbose=False)
    assert out.getvalue() == ""
    summary = FitSummary(stream=out)
    summary.on_fit_start(trainer, trainer.lightning_module)
    summary.on_fit_end(trainer, trainer.lightning_module)
    assert f"-c {logger.log_dir}/config.yaml --ckpt_path" in out.getvalue()


def test_fit_summary_without_checkpoint_callback_or_logger(tmp_path):
    out = io.StringIO()
    trainer = _trainer(tmp_path, [FitSummary(stream=out)], max_epochs=-1, max_steps=3)
    trainer.fit(TinyModule(), _loader(8))
    lines = out.getvalue().splitlines()
    assert re.fullmatch(
        r"fit done in \d+:\d\d:\d\d: 3 optimizer steps, \d epochs?; max_steps reached", lines[0]
    )
    assert lines[1:] == ["checkpoints: none (no checkpoint callback)"]


def test_fit_summary_monitored_metric_never_logged(tmp_path):
    out = io.StringIO()
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val/video_top1", save_last=True)
    trainer = _trainer(tmp_path, [FitSummary(stream=out), ckpt], enable_checkpointing=True, max_epochs=1)
    trainer.fit(TinyModule(), _loader(8))  # no validation
    assert "best val/video_top1: none (no validation logged it)" in out.getvalue()
    assert "evaluate:" not in out.getvalue()


def test_fit_summary_on_exception_writes_one_line_and_keeps_the_error(tmp_path):
    out = io.StringIO()
    trainer = _trainer(tmp_path, [FitSummary(stream=out)])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(TinyModule(fail_at_step=2), _loader(8))
    assert re.fullmatch(
        r"fit stopped by RuntimeError after \d+:\d\d:\d\d at step 2 \(epoch 2\)\n", out.getvalue()
    )


def test_fit_summary_never_raises(tmp_path, monkeypatch, capsys):
    def broken(self, trainer):
        raise KeyError("nope")

    monkeypatch.setattr(FitSummary, "summary_lines", broken)
    trainer = _trainer(tmp_path, [FitSummary()], max_epochs=1)
    trainer.fit(TinyModule(), _loader(4))
    assert trainer.state.finished
    assert "fit summary: could not be written (KeyError" in capsys.readouterr().err


def test_text_bar_epoch_total_with_accumulation_and_max_steps(tmp_path):
    # max_epochs -1 with max_steps: Lightning's total_train_batches counts the remaining *steps*; with 2
    # batches per step the bar must count batches. 6 batches = 3 steps per epoch; max_steps 4 leaves 1 step =
    # 2 batches for epoch 2 (Lightning's count: 1, i.e. "batch 2/1 (200%)").
    out = io.StringIO()
    trainer = _trainer(
        tmp_path,
        [TextProgressBar(interval=0, stream=out)],
        max_epochs=-1,
        max_steps=4,
        accumulate_grad_batches=2,
        limit_val_batches=0,
    )
    trainer.fit(TinyModule(), _loader(24))
    lines = [ln.split(" | ")[0] for ln in out.getvalue().splitlines() if ln.startswith("epoch")]
    assert [ln.split(" ", 2)[2] for ln in lines] == [
        *(f"batch {i}/6 ({100 * i / 6:.1f}%)" for i in range(1, 7)),
        "batch 1/2 (50.0%)",
        "batch 2/2 (100.0%)",
    ], lines


def test_fit_summary_counts_the_steps_of_this_run_after_a_resume(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    first = _trainer(tmp_path, [ckpt], max_epochs=1, enable_checkpointing=True, limit_val_batches=0)
    first.fit(TinyModule(), _loader(20))

    def resume(**kw) -> str:
        out = io.StringIO()
        callbacks = [FitSummary(stream=out), ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)]
        trainer = _trainer(tmp_path, callbacks, max_epochs=2, enable_checkpointing=True, **kw)
        val = _loader(4) if kw.get("limit_val_batches") else None
        trainer.fit(TinyModule(), _loader(20), val, ckpt_path=str(tmp_path / "ck" / "last.ckpt"))
        return out.getvalue()

    out = resume(limit_val_batches=0)
    assert "10 optimizer steps (5 in this run)" in out, out
    # Resuming a run that is already done trains nothing, and is not said to leave a model unvalidated.
    out = resume(limit_val_batches=1)
    assert "10 optimizer steps (0 in this run)" in out, out
    assert "was not validated" not in out
