import re

import pytest

from bingnn.distill.recipe import (
    BUILTIN_RECIPES,
    RecipeError,
    apply_overrides,
    load_recipe,
    parse_variant,
    stage_config,
)


def test_paper_recipe_matches_the_paper_table():
    r = load_recipe("paper")
    assert r["data"] == {"dataset": "modelnet40", "num_points": 1024, "download": False}
    assert r["model"]["k"] == 20 and r["model"]["widths"] == [64, 64, 128, 256]
    assert (r["loss"]["alpha"], r["loss"]["lsp_weight"], r["loss"]["temperature"]) == (
        0.1,
        100.0,
        3.0,
    )
    expect = {
        1: (1e-3, 1e-5, 250, "multistep"),
        2: (2.5e-4, 1e-5, 350, "multistep"),
        3: (1e-3, 0.0, 350, "step"),
    }
    for stage, (lr, wd, epochs, sched) in expect.items():
        tr = stage_config(r, stage, "bf2-hamming")["train"]
        assert (tr["lr"], tr["weight_decay"], tr["epochs"], tr["schedule"]["type"]) == (
            lr,
            wd,
            epochs,
            sched,
        )
        assert (tr["batch_size"], tr["eval_batch_size"], tr["optimizer"]) == (32, 16, "adam")
    assert stage_config(r, 1, "bf2-hamming")["train"]["schedule"]["milestones"] == [0.5, 0.75]
    assert stage_config(r, 3, "rf")["train"]["schedule"]["step_size"] == 50
    # LSP kernels: stage 1 L2/L2; stage 2 Hamming-or-L2 / L2; stage 3 same / same
    k = {
        (s, v): (c["loss"]["kernel_s"], c["loss"]["kernel_t"])
        for s in (1, 2, 3)
        for v in ("bf2-hamming", "bf2-l2")
        for c in [stage_config(r, s, v)]
    }
    assert k[1, "bf2-hamming"] == ("rbf_l2", "rbf_l2")
    assert k[2, "bf2-hamming"] == ("rbf_hamming", "rbf_l2")
    assert k[2, "bf2-l2"] == ("rbf_l2", "rbf_l2")
    assert k[3, "bf2-hamming"] == ("rbf_hamming", "rbf_hamming")
    assert k[3, "bf2-l2"] == ("rbf_l2", "rbf_l2")
    assert [stage_config(r, s, "rf")["init_from_teacher"] for s in (1, 2, 3)] == [
        False,
        True,
        True,
    ]


def test_quick_recipe_and_stage_models():
    r = load_recipe("quick")
    assert r["variants"] == ["bf2-hamming", "rf"] and r["data"]["dataset"] == "synthetic"
    c0 = stage_config(r, 0)
    assert c0["model"]["arch"] == "dgcnn" and c0["variant"] == "float"
    c = stage_config(r, 2, "bf2-hamming")
    assert c["model"]["arch"] == "bindgcnn"
    assert (c["model"]["variant"], c["model"]["knn"], c["model"]["stage"]) == ("bf2", "hamming", 2)
    assert c["model"]["widths"] == r["model"]["widths"]


def test_modelnet10_recipe_sizes_and_shipping_budget():
    """The ModelNet10 recipe reads the real data set, holds out a validation split, and its
    three shipped models (teacher + two students, float16) fit the 5 MB repository budget."""
    from bingnn.models import build_model

    r = load_recipe("modelnet10")
    assert r["data"]["dataset"] == "modelnet10" and r["data"]["val_fraction"] > 0
    assert r["variants"] == ["bf2-hamming", "rf"]
    params = 0
    for stage, variant in ((0, None), (3, "bf2-hamming"), (3, "rf")):
        c = stage_config(r, stage, variant)
        model = build_model({**c["model"], "num_classes": 10})
        params += sum(p.numel() for p in model.parameters())
    assert 2 * params < 5_000_000


@pytest.mark.parametrize("name", BUILTIN_RECIPES)
def test_copy_of_a_builtin_recipe_file_means_the_same(tmp_path, name):
    """An edited copy of a built-in file is merged over that recipe, not over quick: a copy of
    modelnet10.toml loaded over quick would train on quick's 960 clouds without a word."""
    from importlib import resources

    text = resources.files("bingnn.distill.recipes").joinpath(f"{name}.toml").read_text()
    builtin = {k: v for k, v in load_recipe(name).items() if k != "source"}
    for body in (text, 'base = "none"\n' + text):
        p = tmp_path / "copy.toml"
        p.write_text(body)
        assert {k: v for k, v in load_recipe(p).items() if k != "source"} == builtin
    # Edited: the edit is all that changes.
    edited, n = re.subn(r"^seed = \d+$", "seed = 7", text, count=1, flags=re.M)
    if not n:
        edited = text.replace("format_version = 2", "format_version = 2\nseed = 7", 1)
    p.write_text(edited)
    assert load_recipe(p) | {"source": None} == builtin | {"seed": 7, "source": None}


def test_base_none_takes_the_file_alone(tmp_path):
    p = tmp_path / "alone.toml"
    p.write_text('base = "none"\nformat_version = 2\ntask = "pointcloud"\nvariants = ["rf"]\n'
                 '[data]\ndataset = "synthetic"\nnum_points = 64\n[model]\nk = 8\n'
                 '[train]\nlr = 1e-3\nepochs = 1\nbatch_size = 8\n')
    r = load_recipe(p)
    assert r["data"].get("train_samples") is None  # not quick's 960
    assert r["name"] == "alone"
    p.write_text('base = "nothing"\n')
    with pytest.raises(RecipeError, match="base must be one of"):
        load_recipe(p)


def test_user_file_overrides(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('base = "paper"\nvariants = ["rf"]\n[stage3]\nepochs = 7\n')
    r = load_recipe(p)
    assert r["name"] == "mine" and r["variants"] == ["rf"]
    assert r["stage3"]["epochs"] == 7 and r["stage3"]["lr"] == 1e-3  # rest inherited
    assert r["data"]["dataset"] == "modelnet40"
    p.write_text('[stage2]\nschedule = { type = "cosine" }\n')
    assert load_recipe(p)["stage2"]["schedule"] == {"type": "cosine"}  # replaced whole


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[stage1]\nlrr = 1.0\n", "unknown recipe key 'stage1.lrr'"),
        ("epochs = 3\n", "unknown recipe key 'epochs'"),
        ("[data]\nnum_points = '1k'\n", "'data.num_points' must be an integer"),
        ("[data]\nnum_points = true\n", "must be an integer"),
        ('base = "huge"\n', "base must be one of"),
        ("variants = []\n", "'variants' is empty"),
        ('variants = ["rf-hamming"]\n', "RF keeps real node features"),
        ("[stage2]\nepochs = 0\n", "epochs must be an integer >= 1"),
        ("format_version = 9\n", "upgrade bingnn"),
        ("stage1 = 3\n", "must be a table"),
        # every value is checked when the recipe is read, not when its stage starts
        ('[stage2]\nkernel_s = "foo"\n', "stage2.kernel_s: unknown LSP kernel 'foo'"),
        ("[loss]\ntemperature = -1\n", "temperature must be > 0, got -1"),
        ("[stage3]\nalpha = 1.5\n", "alpha (the KD weight) must be in [0, 1]"),
        ("[loss]\nlabel_smoothing = 1.0\n", "label_smoothing must be in [0, 1)"),
        ('[stage1]\noptimizer = "lion"\n', "unknown optimizer 'lion'"),
        ('[stage1]\nschedule = { type = "warp" }\n', "unknown schedule type 'warp'"),
        ("[stage3]\nschedule = { type = \"step\" }\n", "exactly one of step_size"),
        ("[model]\nk = 200\n", "k = 200 neighbours need 1 <= k <= num_points (128)"),
        ("[model]\nwidths = [8, 0]\n", "model.widths must be positive integers"),
        ("[model]\ndropout = 1.0\n", "model.dropout must be in [0, 1)"),
        ("[model]\nmlp = [8]\n", "mlp must give two hidden widths"),
        ('[data]\ndataset = "shapenet"\n', "data.dataset 'shapenet' is not one of"),
        ("[data]\nval_fraction = 0.0\n", "data.val_fraction must be in (0, 1)"),
        ("[stage1]\nlr = -1.0\n", "learning rate must be > 0"),
        ('[train]\nmode = "minibatch"\n', "'train.mode' does not apply to pointcloud recipes"),
        ("[model]\nhidden_channels = 8\n", "'model.hidden_channels' does not apply"),
        # a variant's table of overrides is checked like its stage
        ("[stage3.rf]\nlrr = 1.0\n", "unknown recipe key 'stage3.rf.lrr'"),
        ("[stage3.rf]\nepochs = 0\n", "stage3 (rf): epochs must be an integer >= 1"),
        ('[stage3.rf]\nteacher = "x.pt"\n', "unknown recipe key 'stage3.rf.teacher'"),
        ("[stage3.gat]\nepochs = 2\n", "[stage3.gat] is not a variant's table of overrides"),
        ("[stage0.rf]\nepochs = 2\n", "unknown recipe key 'stage0.rf'"),
        ('[stage2.rf]\nmode = "minibatch"\n', "'stage2.rf.mode' does not apply to pointcloud"),
        ('[stage2.bf2]\nepochs = 2\n[stage2."bf2-hamming"]\nepochs = 3\n', "name one variant"),
    ],
)
def test_bad_recipes(tmp_path, text, needle):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(RecipeError, match=re.escape(needle)):
        load_recipe(p)


@pytest.mark.parametrize(
    "text, needle",
    [
        ('[loss]\nkd_nodes = "some"\n', "kd_nodes must be one of all, train"),
        ('[train]\nmode = "sampled"\n', "mode must be one of full, minibatch"),
        ("[train]\nfanouts = [5, 0]\n", "train.fanouts must be positive integers or -1"),
        ('[model]\ncentering = "max"\n', "unknown centering 'max'"),
        ("[model]\nk = 3\n", "'model.k' does not apply to node recipes"),
        ('variants = ["bingat"]\n', "unknown node variant 'bingat'"),
        ('[data]\ndataset = "reddit"\n', "data.dataset 'reddit' is not one of"),
        ("[stage2]\ntemperature = 0\n", "temperature must be > 0"),
    ],
)
def test_bad_node_recipes(tmp_path, text, needle):
    p = tmp_path / "bad.toml"
    p.write_text('task = "node"\n' + text)
    with pytest.raises(RecipeError, match=re.escape(needle)):
        load_recipe(p)


def test_node_recipes_resolve_like_the_former_defaults():
    r = load_recipe("planetoid")
    assert r["task"] == "node" and r["variants"] == ["bingcn"]
    c = {s: stage_config(r, s, "bingcn") for s in range(4)}
    assert c[0]["model"]["arch"] == "gcn" and c[1]["model"]["arch"] == "bingcn"
    assert [c[s]["train"]["lr"] for s in range(4)] == [0.01, 0.01, 0.0025, 0.01]
    assert [c[s]["train"]["weight_decay"] for s in range(4)] == [5e-4, 5e-4, 5e-4, 0.0]
    assert c[0]["loss"] == {"label_smoothing": 0.0}  # no teacher: cross-entropy only
    assert (c[1]["loss"]["alpha"], c[1]["loss"]["kd_nodes"], c[1]["loss"]["temperature"]) == (
        0.9, "all", 2.0)
    # every node student starts from its teacher (same layout at every stage)
    assert [c[s]["init_from_teacher"] for s in range(4)] == [False, True, True, True]
    assert c[1]["model"]["cached"] is True  # full batch: the GCN caches its adjacency
    sage = stage_config(r, 0, "binsage")
    assert sage["model"]["arch"] == "graphsage" and "node_scale" not in sage["model"]
    # a user file on the planetoid base
    from bingnn.distill.recipe import single_run_config

    one = single_run_config(r, "bingcn", 2)
    assert (one["model"]["arch"], one["model"]["stage"], one["train"]["lr"]) == ("bingcn", 2,
                                                                                 0.01)
    with pytest.raises(RecipeError, match="float model"):
        single_run_config(r, "gcn", 3)


def test_node_user_file_and_overrides(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('task = "node"\n[data]\ndataset = "citeseer"\n[stage3]\nepochs = 50\n')
    r = load_recipe(p)
    assert r["data"]["dataset"] == "citeseer" and r["model"]["hidden_channels"] == 64
    assert stage_config(r, 3, "bingcn")["train"]["epochs"] == 50
    # command-line training options set every stage, the stage sections included
    o = apply_overrides(r, ["binsage"], train={"epochs": 7, "lr": 0.02}, loss={"alpha": 0.5})
    assert {stage_config(o, s, "binsage")["train"]["epochs"] for s in range(4)} == {7}
    assert {stage_config(o, s, "binsage")["train"]["lr"] for s in range(4)} == {0.02}
    assert stage_config(o, 2, "binsage")["loss"]["alpha"] == 0.5
    with pytest.raises(RecipeError, match="does not apply"):
        apply_overrides(r, model={"k": 3})


def test_variants_and_overrides():
    assert parse_variant("bf2-hamming") == ("bf2", "hamming")
    assert parse_variant("BF1-L2") == ("bf1", "l2")
    assert parse_variant("rf") == ("rf", "l2")
    assert parse_variant("bf2_bal") == ("bf2_bal", "hamming")
    for bad in ("", "xx", "bf2-cosine", "bf2-l2-x"):
        with pytest.raises(RecipeError):
            parse_variant(bad)
    r = apply_overrides(load_recipe("paper"), ["bf1-l2"], 0.01)
    assert r["variants"] == ["bf1-l2"]
    assert [r[f"stage{i}"]["epochs"] for i in range(4)] == [2, 2, 4, 4]
    assert apply_overrides(load_recipe("quick"), None, 1e-6)["stage1"]["epochs"] == 1
    with pytest.raises(RecipeError):
        apply_overrides(load_recipe("quick"), None, 0.0)
    with pytest.raises(RecipeError, match="needs a variant"):
        stage_config(load_recipe("quick"), 1)
    with pytest.raises(RecipeError, match="unknown LSP kernel"):
        r = load_recipe("quick")
        r["stage1"]["kernel_s"] = "cosine"
        stage_config(r, 1, "rf")


def test_format_1_files_still_read(tmp_path):
    p = tmp_path / "old.toml"
    p.write_text("format_version = 1\n[stage1]\ntest_batch_size = 5\nepochs = 2\n")
    r = load_recipe(p)
    assert stage_config(r, 1, "rf")["train"]["eval_batch_size"] == 5
    assert stage_config(r, 2, "rf")["train"]["eval_batch_size"] == 64  # the quick base


def test_a_variant_table_overrides_one_variant_of_a_stage(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('base = "modelnet10"\n[stage3]\nepochs = 5\n[stage3.rf]\nepochs = 10\n'
                 'lr = 2e-3\n[stage2.bf2]\nlsp_weight = 3.0\n')
    r = load_recipe(p)
    rf, bf2 = (stage_config(r, 3, v)["train"] for v in ("rf", "bf2-hamming"))
    assert (rf["epochs"], rf["lr"]) == (10, 2e-3)
    assert (bf2["epochs"], bf2["lr"]) == (5, 1e-3)
    # the short spelling names the canonical variant
    assert "bf2-hamming" in r["stage2"] and "bf2" not in r["stage2"]
    assert stage_config(r, 2, "bf2-hamming")["loss"]["lsp_weight"] == 3.0
    assert stage_config(r, 2, "rf")["loss"]["lsp_weight"] == 1.0
    # the teacher (stage 0) is shared; other stages unchanged
    assert stage_config(r, 1, "rf")["train"]["epochs"] == 4
    # a table for a variant the file does not train is allowed (a base's table)
    p.write_text('base = "modelnet10"\nvariants = ["bf2-hamming"]\n[stage3.rf]\nepochs = 10\n')
    assert stage_config(load_recipe(p), 3, "bf2-hamming")["train"]["epochs"] == 5
    # command-line options set every stage of every variant; epochs scale per variant
    o = apply_overrides(r, None, 0.5, train={"lr": 0.02})
    assert stage_config(o, 3, "rf")["train"]["lr"] == 0.02
    assert [stage_config(o, 3, v)["train"]["epochs"] for v in ("rf", "bf2-hamming")] == [5, 2]


def test_a_files_stage_key_outranks_its_bases_variant_table(tmp_path):
    # the built-in modelnet10 buys RF (only) a longer stage 3
    r = load_recipe("modelnet10")
    assert [stage_config(r, 3, v)["train"]["epochs"] for v in ("rf", "bf2-hamming")] == [10, 5]
    p = tmp_path / "mine.toml"
    p.write_text('base = "modelnet10"\n[stage3]\nepochs = 8\n')
    r = load_recipe(p)
    assert [stage_config(r, 3, v)["train"]["epochs"] for v in ("rf", "bf2-hamming")] == [8, 8]
    # the file's own variant table still wins over its own stage key
    p.write_text('base = "modelnet10"\n[stage3]\nepochs = 8\n[stage3.rf]\nepochs = 12\n')
    r = load_recipe(p)
    assert [stage_config(r, 3, v)["train"]["epochs"] for v in ("rf", "bf2-hamming")] == [12, 8]
    # other keys of the stage leave the base's variant setting alone
    p.write_text('base = "modelnet10"\n[stage3]\nlr = 2e-3\n')
    r = load_recipe(p)
    rf = stage_config(r, 3, "rf")["train"]
    assert (rf["epochs"], rf["lr"]) == (10, 2e-3)
    assert load_recipe("modelnet10")["stage3"]["rf"] == {"epochs": 10}  # the base is not edited


def test_node_variant_table(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('task = "node"\nvariants = ["bingcn", "binsage"]\n[stage3.binsage]\n'
                 'epochs = 11\nfanouts = [5, 5]\n')
    r = load_recipe(p)
    assert stage_config(r, 3, "binsage")["train"]["epochs"] == 11
    assert stage_config(r, 3, "bingcn")["train"]["epochs"] != 11
    p.write_text('task = "node"\n[stage3.binsage]\nfanouts = [5, 0]\n')
    with pytest.raises(RecipeError, match=re.escape("stage3.binsage.fanouts must be")):
        load_recipe(p)
