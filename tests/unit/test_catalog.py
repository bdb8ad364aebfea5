"""catalog: recipe headers, names from recipe packs, copies that stay inside the recipe's folder."""

from __future__ import annotations

from pathlib import Path

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_tiny_recipe_headers_build_the_model_instead_of_a_placeholder():
    from llama_factory_ext.catalog import read_header

    for name in ("tiny_cls", "tiny_cls_layerwise", "tiny_cls_multilabel", "tiny_cls_score", "tiny_sft", "tiny_sft_rslora"):
        run = read_header(RECIPES / f"{name}.yaml")["run"]
        assert run == f"llamafactory-ext tiny-model && llamafactory-cli train {name}.yaml"


def test_a_name_repeated_by_a_pack_is_listed_as_pack_name(tmp_path):
    import shutil
    import types

    from llama_factory_ext import hookimpl, plugins
    from llama_factory_ext.catalog import all_recipes, find

    shutil.copy(RECIPES / "tiny_sft.yaml", tmp_path / "tiny_sft.yaml")
    mod = types.ModuleType("team_pack")
    mod.lfx_recipe_dirs = hookimpl(lambda: [tmp_path])
    plugins.reset()
    plugins.get_plugin_manager().register(mod, name="team_pack")
    try:
        recipes = all_recipes()
        assert recipes["tiny_sft"].pack == "llama-factory-ext"
        assert recipes["team_pack:tiny_sft"].path == tmp_path / "tiny_sft.yaml"
        assert find("team_pack:tiny_sft") == tmp_path / "tiny_sft.yaml"
    finally:
        plugins.reset()


def test_recipes_copy_stays_inside_the_recipe_folder(tmp_path):
    from llama_factory_ext.catalog import copy_recipe

    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("TOPSECRET")
    shared = tmp_path / "shared" / "r"
    (shared / "data").mkdir(parents=True)
    (shared / "data" / "dataset_info.json").write_text("{}")
    (shared / "data" / "leak.txt").symlink_to(secret / "key.txt")
    (shared / "data" / "leakdir").symlink_to(secret)
    (shared / "in.yaml").write_text("model_name_or_path: x\ndataset_dir: data\n")
    (shared / "out.yaml").write_text("model_name_or_path: x\ndataset_dir: ../..\n")
    target, left = copy_recipe(str(shared / "in.yaml"), str(tmp_path / "c1"))
    assert sorted(p.name for p in (tmp_path / "c1" / "data").rglob("*")) == ["dataset_info.json"]
    assert any("leak.txt" in x for x in left) and any("leakdir" in x for x in left)
    target, left = copy_recipe(str(shared / "out.yaml"), str(tmp_path / "c2"))
    assert not (tmp_path / "c2" / "data").exists() and any("not inside the recipe's own folder" in x for x in left)
    assert "TOPSECRET" not in "".join(p.read_text() for p in (tmp_path).rglob("*") if p.is_file() and "secret" not in str(p) and not p.is_symlink())
