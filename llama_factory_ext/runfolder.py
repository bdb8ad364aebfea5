"""One run per folder: a lock (pid, host), the run's status, clearing a previous run's outputs on
``overwrite_output_dir``, and resuming only from complete checkpoints."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
from typing import Optional

from .api import UserError
from .runtime import is_main_process
from .safeio import write_json

LOCK = ".lfx_run.lock"
STATUS = "run_status.json"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# what a previous run left in its folder (cleared before a new run with overwrite_output_dir: true)
RUN_FILES = (
    "predictions.jsonl", "classification_report.json", "classification_report.md", "confusion_matrix.png",
    "cls_run.json", "label_map.json", "cls_head.safetensors", "all_results.json", "train_results.json",
    "eval_results.json", "predict_results.json", "trainer_state.json", "trainer_log.jsonl", STATUS,
    "adapter_model.safetensors", "adapter_config.json", "model.safetensors", "model.safetensors.index.json",
    "config.json", "training_args.bin", "README.md",
)
RUN_PATTERNS = (re.compile(r"^model-\d+-of-\d+\.safetensors$"), re.compile(r"^training_.*\.png$"), CHECKPOINT,
                re.compile(r"^incomplete-checkpoint-\d+$"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """Exclusive ownership of an output folder; a lock whose process is gone (same host) is taken over."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK)
        self.held = False

    def acquire(self) -> "RunLock":
        if not is_main_process():
            return self
        os.makedirs(self.output_dir, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and self._stale(owner):
                    print(f"llama-factory-ext: {self.output_dir}: a previous run (pid {owner.get('pid')}) ended without "
                          "releasing it; taking it over", file=sys.stderr)
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                if owner is None:  # being written right now, or unreadable: look again
                    time.sleep(0.2)
                    owner = self._owner() or {}
                    if not owner:
                        os.unlink(self.path)
                        continue
                raise UserError(
                    f"key `output_dir`: {self.output_dir} is in use by another run (pid {owner.get('pid')} on "
                    f"{owner.get('host')}, since {owner.get('started')}); pick another output_dir, or wait for it. "
                    f"If no run uses it any more, delete {self.path}"
                )
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise UserError(f"key `output_dir`: cannot take the lock {self.path}")

    def _owner(self) -> Optional[dict]:
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    @staticmethod
    def _stale(owner: dict) -> bool:
        if owner.get("host") != socket.gethostname():
            return False  # another machine: cannot tell, keep it
        pid = owner.get("pid")
        return not isinstance(pid, int) or not _pid_alive(pid)

    def release(self) -> None:
        if self.held:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.held = False


def write_status(output_dir: str, status: str, **fields) -> None:
    """``run_status.json``: running / finished / failed (with reason and advice)."""
    if not is_main_process():
        return
    data = {"status": status, "pid": os.getpid(), "time": time.strftime("%Y-%m-%d %H:%M:%S"), **fields}
    write_json(os.path.join(output_dir, STATUS), data)


def read_status(output_dir: str) -> Optional[dict]:
    try:
        with open(os.path.join(output_dir, STATUS), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def previous_run(output_dir: str) -> list[str]:
    """Entries of ``output_dir`` that a previous run wrote."""
    if not os.path.isdir(output_dir):
        return []
    return sorted(e for e in os.listdir(output_dir) if e in RUN_FILES or any(p.match(e) for p in RUN_PATTERNS))


def clear_previous_run(output_dir: str) -> list[str]:
    """Remove a previous run's outputs (files and checkpoints), nothing else; returns what was removed."""
    if not is_main_process():
        return []
    gone = previous_run(output_dir)
    markers = {"cls_run.json", "trainer_state.json", "all_results.json", STATUS, "trainer_log.jsonl"}
    if not (set(gone) & markers or any(CHECKPOINT.match(e) for e in gone)):
        return []  # not a run folder: touch nothing
    for e in gone:
        path = os.path.join(output_dir, e)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    if gone:
        print(f"llama-factory-ext: overwrite_output_dir: removed the previous run's outputs from {output_dir} "
              f"({len(gone)} entries: {', '.join(gone[:6])}{' ...' if len(gone) > 6 else ''})", file=sys.stderr)
    return gone


def checkpoint_complete(path: str) -> bool:
    """A checkpoint the trainer finished writing: trainer state and weights present and readable."""
    state = os.path.join(path, "trainer_state.json")
    try:
        with open(state, encoding="utf-8") as f:
            json.load(f)
    except (OSError, ValueError):
        return False
    names = os.listdir(path)
    return any(n.endswith((".safetensors", ".bin")) for n in names)


def usable_checkpoint(output_dir: str, wanted: Optional[str]) -> Optional[str]:
    """The checkpoint to resume from: ``wanted`` if complete, else the newest complete one.

    Incomplete ones (a kill during saving) are renamed ``incomplete-checkpoint-N`` with a warning.
    """
    if not wanted or not is_main_process():
        return wanted
    wanted_dir = os.path.dirname(os.path.abspath(wanted))
    if wanted_dir != os.path.abspath(output_dir):
        if not checkpoint_complete(wanted):
            raise UserError(f"key `resume_from_checkpoint`: {wanted} is incomplete (no trainer_state.json or weights)")
        return wanted
    steps = sorted(((int(m.group(1)), e) for e in os.listdir(output_dir) for m in [CHECKPOINT.match(e)] if m), reverse=True)
    for _, name in steps:
        path = os.path.join(output_dir, name)
        if checkpoint_complete(path):
            return path
        moved = os.path.join(output_dir, "incomplete-" + name)
        os.replace(path, moved)
        print(f"llama-factory-ext: warning: {path} is incomplete (the run stopped while saving it); "
              f"skipped and moved to {moved}", file=sys.stderr)
    print(f"llama-factory-ext: warning: no complete checkpoint in {output_dir}; training starts from the beginning",
          file=sys.stderr)
    return None
