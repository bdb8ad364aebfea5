"""USE_RAY=1 trains in Ray workers, which the pack's run state does not reach (a pack stage fails there with the
host's `Unknown task`, strategy hooks are dropped): a recipe that uses them is refused with one message before Ray
starts; a host-only recipe goes to the host untouched."""

from __future__ import annotations

import pytest
import yaml

from conftest import run_cli, write_yaml
from test_patches_train import sft_recipe

pytestmark = pytest.mark.e2e


def _cls_recipe(workdir, tiny_llama, name: str, **keys):
    data = yaml.safe_load((workdir / "tiny_cls.yaml").read_text())
    data.update(model_name_or_path=str(tiny_llama), output_dir=str(workdir / "out" / name), max_steps=1, **keys)
    return write_yaml(workdir / f"{name}.yaml", data)


def test_use_ray_refuses_a_pack_stage_and_hooked_strategies_before_ray_starts(workdir, tiny_llama):
    recipe = _cls_recipe(workdir, tiny_llama, "ray_cls", finetuning_type=["rslora", "cls_head", "layerwise_lr"],
                         layerwise_lr_decay=0.9)
    out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir, USE_RAY="1")
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [x for x in out.stderr.splitlines() if "USE_RAY" in x]
    assert len(lines) == 1, out.stderr[-3000:]
    assert "environment variable USE_RAY=1 trains in Ray workers" in lines[0]
    assert "stage cls would fail there (`Unknown task: cls`) and layerwise_lr would be silently dropped" in lines[0]
    assert "Unknown task" not in out.stderr.replace(lines[0], "") and "ray" not in out.stderr.replace(lines[0], "").lower()
    assert not (workdir / "out" / "ray_cls").exists()  # nothing loaded, nothing written

    recipe = sft_recipe(workdir, tiny_llama, "ray_lw", finetuning_type=["lora", "layerwise_lr"], layerwise_lr_decay=0.9)
    out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir, USE_RAY="true")
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "USE_RAY=true trains in Ray workers" in out.stderr and "layerwise_lr would be silently dropped" in out.stderr
    assert "stage sft" not in out.stderr


def test_use_ray_with_a_host_only_recipe_is_the_hosts(workdir, tiny_llama):
    """Fail-open: the pack adds no message; the outcome is exactly the host's alone (here: Ray is not installed)."""
    recipe = sft_recipe(workdir, tiny_llama, "ray_host", finetuning_type="lora")
    with_pack = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir, USE_RAY="1")
    host = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir, USE_RAY="1", LLAMA_FACTORY_EXT_DISABLE="1")
    assert "llama-factory-ext" not in with_pack.stderr and "USE_RAY" not in with_pack.stderr
    assert with_pack.returncode == host.returncode
    last = lambda p: [x for x in p.stderr.strip().splitlines() if x.strip()][-1:]  # noqa: E731
    assert last(with_pack) == last(host), (with_pack.stderr[-2000:], host.stderr[-2000:])


def test_use_ray_values_the_host_does_not_take_are_not_refused(monkeypatch):
    from llama_factory_ext.patches.train import backend_problems
    from llama_factory_ext.recipe import prepare

    run = prepare({"stage": "sft", "finetuning_type": ["lora", "layerwise_lr"], "layerwise_lr_decay": 0.9})
    for value in ("0", "", "no", "yes"):  # the host's is_env_enabled takes 1 / true / y only
        monkeypatch.setenv("USE_RAY", value)
        assert backend_problems(run, {}) == []
    monkeypatch.setenv("USE_RAY", "Y")
    assert len(backend_problems(run, {})) == 1
    # rslora's hook only reports: it works in Ray workers (its host keys travel with the args)
    assert backend_problems(prepare({"stage": "sft", "finetuning_type": "rslora"}), {}) == []
