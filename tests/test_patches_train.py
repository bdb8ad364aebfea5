"""Foundation: activation through the host's own CLI, host parity, gate, bad input, plugins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BIN, env, read_log, run_cli, write_yaml

SFT_BASE = {
    "stage": "sft",
    "do_train": True,
    "dataset": "alpaca_sample",
    "dataset_dir": "data",
    "template": "llama3",
    "cutoff_len": 64,
    "max_samples": 16,
    "overwrite_cache": True,
    "preprocessing_num_workers": 1,
    "logging_steps": 1,
    "save_strategy": "no",
    "overwrite_output_dir": True,
    "report_to": "none",
    "per_device_train_batch_size": 4,
    "max_steps": 3,
    "learning_rate": 1.0e-3,
    "seed": 7,
}


def sft_recipe(workdir: Path, tiny_llama: Path, name: str, **keys) -> Path:
    data = dict(SFT_BASE, model_name_or_path=str(tiny_llama), output_dir=str(workdir / "out" / name), **keys)
    return write_yaml(workdir / f"{name}.yaml", data)


def test_package_comes_from_installed_wheel():
    import llama_factory_ext

    assert "site-packages" in llama_factory_ext.__file__
    assert (Path(llama_factory_ext.__file__).parents[1] / "llama_factory_ext.pth").exists()


@pytest.mark.e2e
def test_cli_train_activates_rslora(workdir, tiny_llama):
    """The host's own `llamafactory-cli train` runs the pack: finetuning_type: rslora takes effect."""
    recipe = sft_recipe(workdir, tiny_llama, "rs", finetuning_type="rslora", lora_rank=4)
    out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    cfg = json.loads((workdir / "out" / "rs" / "adapter_config.json").read_text())
    assert cfg["use_rslora"] is True and cfg["r"] == 4 and cfg["lora_alpha"] == 8
    assert set(cfg["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.mark.e2e
def test_disable_env_turns_pack_off(workdir, tiny_llama):
    recipe = sft_recipe(workdir, tiny_llama, "off", finetuning_type="rslora")
    out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir, LLAMA_FACTORY_EXT_DISABLE="1")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "llama-factory-ext is disabled" in out.stderr and "finetuning_type `rslora`" in out.stderr
    for cmd in (["validate", str(recipe)], ["plugins"]):
        said = run_cli(["llamafactory-ext", *cmd], cwd=workdir, LLAMA_FACTORY_EXT_DISABLE="1")
        assert "llama-factory-ext is disabled" in said.stderr


def _comparable_lines(text: str, *names: str) -> list[str]:
    """A run's log lines without what differs between two identical runs: times, speeds, progress bars, the
    run's own names (``names``: e.g. the output folder's)."""
    import re

    out = []
    for line in text.splitlines():
        if "%|" in line or re.search(r"(it|s)/(s|it)\b|examples/s|_runtime|_per_second|total_flos", line):
            continue
        if not line.strip():
            continue
        line = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(,\d+)?", "", line)
        found = re.match(r"(.*Found linear modules: )(.*)$", line)  # a set: its order differs between processes
        if found:
            line = found.group(1) + ",".join(sorted(found.group(2).split(",")))
        for n in names:
            line = line.replace(n, "NAME")
        out.append(line)
    return out


@pytest.mark.e2e
def test_no_extension_key_matches_host_exactly(workdir, tiny_llama):
    """Same trainable parameter names and same first-step losses with and without the pack; the pack adds one
    line, its memory estimate, to the host's output (no repeated config dumps)."""
    from collections import Counter

    results, logs = {}, {}
    for label, extra in (("pack_on", {}), ("pack_off", {"LLAMA_FACTORY_EXT_DISABLE": "1"})):
        recipe = sft_recipe(workdir, tiny_llama, label, finetuning_type="lora", lora_target="all", print_param_status=True)
        out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir, **extra)
        assert out.returncode == 0, out.stderr[-3000:]
        logs[label] = Counter(_comparable_lines(out.stdout + out.stderr, label))
        names = sorted(
            line.split("name: ")[1].split(",")[0]
            for line in (out.stdout + out.stderr).splitlines()
            if line.startswith("name: ") and "trainable: True" in line
        )
        losses = [r["loss"] for r in read_log(workdir / "out" / label) if "loss" in r]
        results[label] = (names, losses)
    assert results["pack_on"][0] and results["pack_on"][0] == results["pack_off"][0]
    assert len(results["pack_on"][1]) == 3
    assert results["pack_on"][1] == pytest.approx(results["pack_off"][1], rel=1e-6, abs=1e-7)
    extra = list((logs["pack_on"] - logs["pack_off"]).elements())
    assert len(extra) == 1 and extra[0].startswith("llama-factory-ext memory estimate: "), extra[:60]
    assert not logs["pack_off"] - logs["pack_on"]


@pytest.mark.e2e
def test_run_exp_from_python_is_active(workdir, tiny_llama):
    args = dict(SFT_BASE, model_name_or_path=str(tiny_llama), output_dir=str(workdir / "out" / "py"),
                finetuning_type="rslora", lora_rank=2, max_steps=1)
    code = f"from llamafactory.train.tuner import run_exp; run_exp({args!r})"
    out = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    cfg = json.loads((workdir / "out" / "py" / "adapter_config.json").read_text())
    assert cfg["use_rslora"] is True and cfg["lora_alpha"] == 4


@pytest.mark.e2e
def test_torchrun_workers_are_active(workdir, tiny_llama):
    """FORCE_TORCHRUN relaunches launcher.py under torchrun: the worker must run the pack too."""
    recipe = sft_recipe(workdir, tiny_llama, "ddp", finetuning_type="rslora", lora_rank=2, max_steps=1, ddp_backend="gloo")
    out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir, FORCE_TORCHRUN="1", NPROC_PER_NODE="1")
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "torchrun" in out.stdout + out.stderr or "distributed" in (out.stdout + out.stderr).lower()
    cfg = json.loads((workdir / "out" / "ddp" / "adapter_config.json").read_text())
    assert cfg["use_rslora"] is True


def _assert_clean_failure(out, output_dir: Path):
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    assert not output_dir.exists(), "nothing may be written on bad input"


@pytest.mark.e2e
def test_unknown_keys_all_reported_with_did_you_mean(workdir, tiny_llama):
    recipe = sft_recipe(workdir, tiny_llama, "bad", learning_rat=1e-4, lora_rnak=8)
    out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir)
    _assert_clean_failure(out, workdir / "out" / "bad")
    assert "2 problems" in out.stderr
    assert "`learning_rat`" in out.stderr and "did you mean `learning_rate`" in out.stderr
    assert "`lora_rnak`" in out.stderr and "did you mean `lora_rank`" in out.stderr
    assert "bad.yaml" in out.stderr


@pytest.mark.e2e
def test_misspelled_strategy(workdir, tiny_llama):
    recipe = sft_recipe(workdir, tiny_llama, "bad2", finetuning_type=["rslroa"])
    out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir)
    _assert_clean_failure(out, workdir / "out" / "bad2")
    assert "unknown strategy 'rslroa'" in out.stderr and "did you mean `rslora`" in out.stderr


def _run_with_host_changed(workdir, recipe: Path, change: str):
    """`llamafactory-cli train` in a process whose host was changed before the pack attaches."""
    code = "\n".join(["import sys", change, f"sys.argv = ['llamafactory-cli', 'train', {recipe.name!r}]",
                      "from llamafactory.cli import main", "main()"])
    return subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env(), capture_output=True, text=True,
                          timeout=600)


@pytest.mark.e2e
def test_untested_host_version_runs_with_one_warning(workdir, tiny_llama):
    """A version outside the tested list whose functions match: the pack runs, one line names the tested hosts."""
    recipe = sft_recipe(workdir, tiny_llama, "ver", finetuning_type="rslora", lora_rank=2, max_steps=1)
    out = _run_with_host_changed(workdir, recipe, "import llamafactory.extras.env as e; e.VERSION = '0.9.9'")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if "not a tested host" in ln]
    assert len(lines) == 1 and "0.9.9" in lines[0] and "0.9.5, 0.9.6.dev0" in lines[0]
    assert json.loads((workdir / "out" / "ver" / "adapter_config.json").read_text())["use_rslora"] is True


CHANGED_HOST = ("import llamafactory.train.trainer_utils as u\n"
                "def create_custom_optimizer(model, args, finetuning_args): return None\n"
                "u.create_custom_optimizer = create_custom_optimizer")


@pytest.mark.e2e
def test_changed_host_fails_open_for_host_only_runs(workdir, tiny_llama):
    """A host whose wrapped function changed: host-only recipes train as the host's own, pack recipes refuse
    with one message naming the key that needs the pack and the changed function."""
    plain = sft_recipe(workdir, tiny_llama, "plain", finetuning_type="lora", max_steps=1)
    out = _run_with_host_changed(workdir, plain, CHANGED_HOST)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (workdir / "out" / "plain" / "adapter_config.json").exists()

    packed = sft_recipe(workdir, tiny_llama, "packed", finetuning_type="rslora", max_steps=1)
    out = _run_with_host_changed(workdir, packed, CHANGED_HOST)
    _assert_clean_failure(out, workdir / "out" / "packed")
    assert "finetuning_type `rslora` needs the pack" in out.stderr
    assert "create_custom_optimizer changed" in out.stderr


def test_gate_reports_changed_or_missing_functions(monkeypatch):
    import llamafactory.train.tuner as tuner

    from llama_factory_ext.host import gate as host

    assert host.check_host() == []
    monkeypatch.setattr(tuner, "_training_function", lambda cfg, extra: None)
    monkeypatch.delattr(tuner, "export_model")
    problems = host.check_host()
    assert any("_training_function changed" in p for p in problems)
    assert any("export_model is missing" in p for p in problems)
    assert any("older than 0.9.5" in p for p in host.check_host("0.9.4"))
    assert host.host_warnings("0.9.5") == [] and host.host_warnings("0.9.6.dev0") == []
    assert "not a tested host" in host.host_warnings("0.10.0")[0]


def test_gate_inspects_host_functions_not_the_packs_wrappers():
    """doctor and the gate look through the pack's wrappers at the host's own functions."""
    import llamafactory.train.tuner as tuner

    from llama_factory_ext.host import gate as host
    from llama_factory_ext.patches.train import is_active

    assert is_active() and hasattr(tuner.run_exp, "_lfx_original")
    assert host.unwrapped(tuner.run_exp).__module__ == "llamafactory.train.tuner"
    assert host.check_host() == []


def _plugin_dir(tmp_path: Path, name: str, source: str) -> Path:
    """A site folder with an installed third-party plugin ``lfx-NAME`` 0.0.1 (entry point NAME = lfx_NAME)."""
    site = tmp_path / f"site_{name}"
    dist = site / f"lfx_{name}-0.0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: lfx-{name}\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text(f"[llama_factory_ext]\n{name} = lfx_{name}\n")
    (site / f"lfx_{name}.py").write_text(source)
    return site


def _broken_plugin_dir(tmp_path: Path) -> Path:
    return _plugin_dir(tmp_path, "broken", "raise ImportError('needs a library that is not installed')\n")


@pytest.mark.e2e
def test_broken_plugin_is_left_out_and_the_run_goes_on(workdir, tiny_llama, tmp_path):
    site = _broken_plugin_dir(tmp_path)
    recipe = sft_recipe(workdir, tiny_llama, "broken", finetuning_type="lora", max_steps=1)
    out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir, PYTHONPATH=str(site))
    assert out.returncode == 0, out.stderr[-2000:]
    warning = [ln for ln in out.stderr.splitlines() if "plugin 'broken'" in ln]
    assert len(warning) == 1 and "lfx-broken 0.0.1" in warning[0] and "left out" in warning[0]
    assert "needs a library that is not installed" in warning[0] and "Traceback" not in out.stderr
    listed = run_cli(["llamafactory-ext", "plugins", "--json"], cwd=workdir, PYTHONPATH=str(site))
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["broken"]["status"] == "left out" and "needs a library" in rows["broken"]["reason"]


HOOKIMPL = "import pluggy\nhookimpl = pluggy.HookimplMarker('llama_factory_ext')\n"


def _failing_hook_plugin_dir(tmp_path: Path) -> Path:
    return _plugin_dir(tmp_path, "failing", HOOKIMPL + "@hookimpl\ndef lfx_before_training(run):\n"
                                                      "    raise RuntimeError('hook exploded')\n")


def _clashing_plugin_dir(tmp_path: Path) -> Path:
    return _plugin_dir(tmp_path, "clash", HOOKIMPL + "from llama_factory_ext.api import Strategy\n"
                                                    "class Mine(Strategy):\n    name = 'rslora'\n"
                                                    "@hookimpl\ndef lfx_register_strategies(register):\n"
                                                    "    register(Mine())\n")


@pytest.mark.e2e
def test_clashing_plugin_never_blocks_a_host_only_run(workdir, tiny_llama, tmp_path):
    site = _clashing_plugin_dir(tmp_path)
    recipe = sft_recipe(workdir, tiny_llama, "clash", finetuning_type="lora", max_steps=1)
    out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir, PYTHONPATH=str(site))
    assert out.returncode == 0, out.stderr[-3000:]
    assert (workdir / "out" / "clash" / "adapter_config.json").exists()


@pytest.mark.e2e
def test_failing_hook_never_blocks_a_host_only_run(workdir, tiny_llama, tmp_path):
    """Identical losses with and without the pack although a plugin's lfx_before_training raises."""
    site = _failing_hook_plugin_dir(tmp_path)
    losses = {}
    for label, extra in (("hooked", {"PYTHONPATH": str(site)}), ("nopack", {"LLAMA_FACTORY_EXT_DISABLE": "1"})):
        recipe = sft_recipe(workdir, tiny_llama, label, finetuning_type="lora", max_steps=2)
        out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir, **extra)
        assert out.returncode == 0, out.stderr[-3000:]
        losses[label] = [r["loss"] for r in read_log(workdir / "out" / label) if "loss" in r]
        if label == "hooked":
            assert "hook exploded" in out.stderr and "goes on as the host's own" in out.stderr
    assert losses["hooked"] and losses["hooked"] == pytest.approx(losses["nopack"], rel=1e-6)


def test_plugins_command_lists_example_plugin(workdir):
    out = run_cli(["llamafactory-ext", "plugins", "--json"], cwd=workdir)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["example"]["package"] == "lfx-example-plugin" and not rows["example"]["builtin"]
    assert "train_norms" in rows["example"]["strategies"]
    assert "rslora" in rows["llama_factory_ext.strategies.rslora"]["strategies"]
    limited = run_cli(["llamafactory-ext", "plugins", "--json"], cwd=workdir, LLAMA_FACTORY_EXT_PLUGINS="")
    assert "example" not in {r["name"] for r in json.loads(limited.stdout)}


def _trainable_count(text: str) -> int:
    for line in text.splitlines():
        if "trainable params:" in line:
            return int(line.split("trainable params:")[1].split("||")[0].strip().replace(",", ""))
    raise AssertionError("no trainable params line")


@pytest.mark.e2e
def test_example_plugin_strategy_runs_in_host(workdir, tiny_llama):
    """A third-party strategy from an installed package is picked up by `llamafactory-cli train`."""
    counts = {}
    for name, ft in (("lora_only", "lora"), ("with_norms", ["lora", "train_norms"])):
        recipe = sft_recipe(workdir, tiny_llama, name, finetuning_type=ft, max_steps=1)
        out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir)
        assert out.returncode == 0, out.stderr[-2000:]
        counts[name] = _trainable_count(out.stdout + out.stderr)
    # 2 layers x 2 norms + final norm, hidden 64 each
    assert counts["with_norms"] - counts["lora_only"] == 5 * 64


def test_doctor_reports_activation():
    out = run_cli(["llamafactory-ext", "doctor", "--json"], cwd=BIN)
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    assert checks["activation (.pth import hook)"]["ok"] is True
    from importlib.metadata import version

    assert checks["llamafactory"]["value"].startswith(version("llamafactory") + " (tested: the ")
    assert checks["llamafactory"]["ok"] is True
    assert checks["host functions the pack wraps"]["ok"] is True
    bad = run_cli(["llamafactory-ext", "doctor", "--json"], cwd=BIN, LLAMA_FACTORY_EXT_DISABLE="1")
    assert bad.returncode == 1
    assert any(c["name"] == "LLAMA_FACTORY_EXT_DISABLE" and c["ok"] is False for c in json.loads(bad.stdout))


@pytest.mark.e2e
def test_demo_command_runs_the_bundled_cls_recipe(tmp_path):
    """README command 1 runs `llamafactory-ext demo`: tiny Llama + bundled data + real llamafactory-cli."""
    out = run_cli(["llamafactory-ext", "demo", "--dir", tmp_path / "demo", "max_steps=2", "eval_steps=2",
                   "save_steps=2"], cwd=tmp_path)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    run_dir = tmp_path / "demo" / "runs" / "tiny_cls"
    assert (run_dir / "predictions.jsonl").exists() and (run_dir / "label_map.json").exists()
    assert "demo finished" in out.stdout and "eval_results.json" in out.stdout
    assert "near chance, 1/6 = 0.17 accuracy, is expected" in out.stdout
    lines = out.stdout.splitlines()
    nxt = lines[lines.index("next, against a TF-IDF baseline (runs as is in a new shell):") + 1].strip()
    fresh = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}  # no environment activated
    done = subprocess.run(["bash", "-c", nxt], cwd=tmp_path, env=fresh, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert (run_dir / "compare" / "compare.md").is_file() and (run_dir / "baseline" / "predictions.jsonl").is_file()
    if sys.prefix != sys.base_prefix:
        assert f"in a new shell, first: source {Path(sys.prefix) / 'bin' / 'activate'}" in out.stdout


def test_gate_reports_missing_used_name(monkeypatch):
    import llamafactory.extras.ploting as ploting

    from llama_factory_ext.host import gate as host

    monkeypatch.delattr(ploting, "plot_loss")
    assert "llamafactory.extras.ploting.plot_loss is missing" in host.check_host()


def test_only_host_adapter_imports_host_internals():
    """Every touch of llamafactory lives in host/ (what the pack reads) and patches/ (what the host calls back)."""
    import re

    import llama_factory_ext

    pkg = Path(llama_factory_ext.__file__).parent
    offenders = []
    for py in pkg.rglob("*.py"):
        if py.relative_to(pkg).parts[0] in ("host", "patches"):
            continue
        for i, line in enumerate(py.read_text().splitlines(), 1):
            if re.match(r"\s*(from|import) llamafactory\b", line):
                offenders.append(f"{py.relative_to(pkg)}:{i}: {line.strip()}")
    assert offenders == []


def test_host_helpers_first_keep_trl_importable():
    """Our helpers may be the first to import the host: trl must still see the host's package-probe fix
    (otherwise every later trainer import fails with "No module named 'mergekit'")."""
    code = ("from llama_factory_ext.host import calls as host\n"
            "host.load_tokenizer\n"
            "import llamafactory.model\n"
            "import llamafactory.train.dpo.trainer\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_argv_form_typed_by_host_parser_and_untouched_without_pack_keys():
    from llama_factory_ext.patches.argv import argv_recipe

    assert argv_recipe(["--stage", "sft", "--finetuning_type", "lora", "--lora_rank", "4", "--do_train"]) is None
    recipe = argv_recipe(["--stage", "sft", "--do_train", "--finetuning_type", "lora+layerwise_lr", "--lora_rank", "4",
                          "--learning_rate=1e-4", "--layerwise_lr_decay", "0.9",
                          "--layerwise_lr_overrides", "{lm_head: 1e-5}", "--bf16", "false"])
    assert recipe == {"stage": "sft", "do_train": True, "finetuning_type": "lora+layerwise_lr", "lora_rank": 4,
                      "learning_rate": 1e-4, "layerwise_lr_decay": 0.9, "layerwise_lr_overrides": {"lm_head": 1e-5},
                      "bf16": False}
    assert argv_recipe(["--stage", "cls", "--finetuning_type", "rslora", "cls_head"])["finetuning_type"] == [
        "rslora", "cls_head"]


@pytest.mark.e2e
def test_cli_argv_form_runs_pack_strategies(workdir, tiny_llama):
    """`llamafactory-cli train --key value ...` (no YAML) reaches the pack too."""
    argv = ["llamafactory-cli", "train"]
    for k, v in dict(SFT_BASE, model_name_or_path=str(tiny_llama), output_dir="out/argv", max_steps=1,
                     finetuning_type="rslora", lora_rank=4).items():
        argv += [f"--{k}", str(v)]
    out = run_cli(argv, cwd=workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    cfg = json.loads((workdir / "out" / "argv" / "adapter_config.json").read_text())
    assert cfg["use_rslora"] is True and cfg["r"] == 4 and cfg["lora_alpha"] == 8

    bad = run_cli(argv[:-4] + ["--finetuning_type", "lora+layerwise_lr", "--layerwise_lr_decy", "0.9"], cwd=workdir)
    text = bad.stderr + bad.stdout
    assert bad.returncode != 0 and "layerwise_lr_decy" in text and "layerwise_lr_decay" in text
    assert "Traceback" not in text



@pytest.mark.e2e
def test_uncached_hub_model_offline_is_named_before_weights_load(workdir, tmp_path):
    """`train` of a pack recipe stops in seconds with the model and the fixes; `validate` warns the same way, and
    says nothing once the model is in the Hugging Face cache."""
    cache = tmp_path / "hf_cache"
    snap = cache / "models--example-org--cached-model" / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (cache / "models--example-org--cached-model" / "refs").mkdir()
    (cache / "models--example-org--cached-model" / "refs" / "main").write_text("0123abcd")
    out = run_cli(["llamafactory-cli", "train", "tiny_cls.yaml", "model_name_or_path=example-org/no-such-model",
                   "output_dir=runs/gated"], cwd=workdir, HF_HUB_CACHE=cache)
    said = out.stdout + out.stderr
    assert out.returncode != 0 and "Traceback" not in said, said[-3000:]
    assert "key `model_name_or_path`: 'example-org/no-such-model' is neither a local folder nor in the Hugging Face cache" in said
    assert "huggingface-cli login" in said and "model_name_or_path=/path/to/model" in said
    assert "Loading weights" not in said and "trainable params" not in said
    for model, warned in (("example-org/no-such-model", True), ("example-org/cached-model", False)):
        r = run_cli(["llamafactory-ext", "validate", "tiny_cls.yaml", f"model_name_or_path={model}"], workdir,
                    HF_HUB_CACHE=cache)
        assert r.returncode == 0 and "tiny_cls.yaml: OK" in r.stdout, r.stdout + r.stderr
        assert (f"warning: key `model_name_or_path`: '{model}'" in r.stdout) == warned, r.stdout
