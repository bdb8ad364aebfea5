"""``llamafactory-ext doctor``: is this environment able to run the pack, and how to fix it if not."""

import importlib
import json
import os
import shutil
import subprocess
import sys


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _version(dist):
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return None


def _activation_in_fresh_interpreter() -> tuple[bool, str]:
    """Does a new interpreter (like the one `llamafactory-cli` starts) install the import hook?"""
    code = "import sys; print(any(type(f).__name__ == 'HostFinder' for f in sys.meta_path))"
    env = {k: v for k, v in os.environ.items() if k != "LLAMA_FACTORY_EXT_DISABLE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    ok = out.stdout.strip() == "True"
    return ok, out.stderr.strip()


def _host_install() -> str:
    """How the host is installed: from a wheel/PyPI, or editable from a source tree."""
    try:
        from importlib.metadata import distribution

        direct = distribution("llamafactory").read_text("direct_url.json")
        if direct and json.loads(direct).get("dir_info", {}).get("editable"):
            return "editable install from " + json.loads(direct).get("url", "a source tree").removeprefix("file://")
    except Exception:
        pass
    return "installed package"


# the oldest Linux NVIDIA driver each CUDA major version of PyTorch's builds runs on (CUDA's minor version
# compatibility: any 12.x build on >= 525.60.13, any 13.x build on >= 580)
DRIVER_FOR_CUDA = {"12": "525.60.13", "13": "580"}
TORCH_PIN = "torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0"
TORCH_INDEX = "https://download.pytorch.org/whl/"


def _driver() -> str | None:
    """The NVIDIA driver version from ``nvidia-smi``, or None (no driver, or it does not answer)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.stdout.strip().splitlines()[:1]
    return first[0].strip() if out.returncode == 0 and first else None


def _cuda_check() -> tuple:
    """(name, ok, value, fix) for CUDA: torch's CUDA build, the driver, and how to match them."""
    try:
        import torch
    except Exception as exc:
        return "CUDA", None, f"torch import failed: {exc}", ""
    build, driver = torch.version.cuda, _driver()
    needs = DRIVER_FOR_CUDA.get(str(build).split(".")[0]) if build else None
    said = f"torch {torch.__version__} built for CUDA {build}" if build else f"torch {torch.__version__} is a CPU-only build"
    said += f" (needs NVIDIA driver >= {needs})" if needs else ""
    said += f"; driver {driver}" if driver else "; no NVIDIA driver found (nvidia-smi)"
    index = (f"install the torch build that matches your driver: pip install {TORCH_PIN} --index-url {TORCH_INDEX}cu126 "
             f"(driver >= {DRIVER_FOR_CUDA['12']}; cu128 and cu130 likewise; the cu130 build, PyPI's default, needs "
             f">= {DRIVER_FOR_CUDA['13']}); `nvidia-smi` shows the highest CUDA version your driver runs")
    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        return "CUDA", True, f"{said}; {torch.cuda.device_count()} GPU(s): {', '.join(names)}", ""
    if driver is None:
        return "CUDA", None, f"{said}: no GPU here (CPU runs: the tiny_* recipes, demo, estimate, validate)", \
            "on a GPU machine: install the NVIDIA driver, then " + index
    return "CUDA", False, f"{said}, but torch sees no GPU", \
        ("a driver older than the torch build needs: update the driver, or " + index) if build else index


def collect() -> list[dict]:
    """Checks as dicts: name, ok (True/False/None=info), value, fix."""
    from ..quiet import import_bitsandbytes_quietly

    import_bitsandbytes_quietly()  # before the host imports it (its optional CPU-kernel notice is noise here)
    from .. import __version__
    from ..host import compat, gate

    checks = []

    def add(name, ok, value, fix=""):
        checks.append({"name": name, "ok": ok, "value": value, "fix": fix})

    add("llama-factory-ext", True, f"{__version__} at {os.path.dirname(os.path.dirname(__file__))}")
    add("python", sys.version_info >= (3, 11), sys.version.split()[0], "use Python >= 3.11")
    hv = gate.host_version()
    tested = gate.tested_host(hv)
    label = {"release": "tested: the PyPI release", "head": "tested: the development head"}.get(tested, "untested")
    add(
        "llamafactory",
        None if hv and not tested and not [p for p in gate.check_host(hv) if "older" in p] else bool(tested),
        f"{hv} ({label}; {_host_install()})" if hv else "not installed",
        "pip install 'llamafactory==0.9.5' (or the head from source: pip install -e LLaMA-Factory/)",
    )
    tv = _version("torch")
    add("torch", tv is not None, tv or "not installed",
        "pip install torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0 (the pin set that works with the host)")
    for dist in ("transformers", "peft", "trl", "accelerate", "datasets", "pluggy"):
        add(dist, _version(dist) is not None, _version(dist) or "not installed", f"pip install {dist}")
    if _version("transformers") in compat.FA2_BROKEN_TRANSFORMERS:
        add("FlashAttention-2", None, f"broken on transformers {_version('transformers')} (LLaMA-Factory issue #10610): "
            "recipes with `flash_attn: fa2` get a warning; use `flash_attn: sdpa` or the host's development head")
    add(*_cuda_check())
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bnb = importlib.import_module("bitsandbytes")
        add("bitsandbytes", True, getattr(bnb, "__version__", "?") + " (QLoRA, `quantization_bit: 4|8`: on a CUDA GPU; "
            "4-bit also trains on the CPU through bitsandbytes' CPU backend, slowly)")
    except Exception as exc:
        add("bitsandbytes", None, f"not usable ({type(exc).__name__}); QLoRA (the *_qlora recipes) needs it",
            "pip install bitsandbytes")
    problems = gate.check_host() if hv else ["host missing"]
    add("host functions the pack wraps", not problems,
        "all present, signatures match (checked on the host's own functions)" if not problems else "; ".join(problems),
        "install a tested host (0.9.5 or the head) or upgrade llama-factory-ext; "
        "runs that use no pack key, strategy or stage still go to the host")
    for warning in gate.host_warnings(hv) if hv else []:
        add("host version", None, warning)
    from ..api import pack_disabled

    disabled = pack_disabled()
    ok, err = _activation_in_fresh_interpreter()
    add("activation (.pth import hook)", ok,
        "installed" + (" but disabled by LLAMA_FACTORY_EXT_DISABLE" if disabled else "") if ok else f"missing {err}",
        "reinstall from the wheel: pip install --force-reinstall llama-factory-ext (editable installs do not ship the .pth)")
    if disabled:
        add("LLAMA_FACTORY_EXT_DISABLE", False, "set: the pack is off", "unset LLAMA_FACTORY_EXT_DISABLE")
    local = os.path.join(os.path.dirname(sys.executable), "llamafactory-cli")
    cli = local if os.path.exists(local) else shutil.which("llamafactory-cli")
    same = False
    if cli:
        try:
            with open(cli, encoding="utf-8", errors="ignore") as f:
                first = f.readline()
            same = os.path.realpath(first[2:].strip().split()[0]) == os.path.realpath(sys.executable) if first.startswith("#!") else True
        except OSError:
            same = False
    add("llamafactory-cli", bool(cli) and same, cli or "not on PATH",
        "activate the environment where both llamafactory and llama-factory-ext are installed")
    try:
        from .. import plugins

        names = [r["name"] for r in plugins.describe()]
        add("plugins", True, ", ".join(names))
    except Exception as exc:
        add("plugins", False, str(exc), "fix or uninstall the named plugin, or set LLAMA_FACTORY_EXT_PLUGINS")
    return checks


def run(args) -> int:
    from ..quiet import stdout_to_stderr

    with stdout_to_stderr():  # host imports log to stdout
        checks = collect()
    if args.json:
        print(json.dumps(checks, indent=2))
    else:
        for c in checks:
            mark = {True: "ok ", False: "FAIL", None: "info"}[c["ok"]]
            print(f"[{mark}] {c['name']}: {c['value']}")
            if c["fix"] and (c["ok"] is False or c["name"] == "CUDA"):
                print(f"       fix: {c['fix']}")
    return 1 if any(c["ok"] is False for c in checks) else 0
