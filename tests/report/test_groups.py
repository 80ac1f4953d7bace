"""Grouping by every setting that varies except the seed, and finding counterparts across modes."""

from __future__ import annotations

from musicvae.report import counterparts, find_runs, group_runs


def _groups(sweep):
    runs, _ = find_runs(sweep.path)
    return group_runs(runs)


def test_mode_by_beta_by_seed_gives_one_group_per_mode_and_beta(sweep):
    for seed in (2, 0, 1):  # written out of order: runs inside a group are sorted by seed
        for beta in (0.2, 0.05):
            for mode in ("none", "cross_attention", "in_attention"):
                sweep.run(mode, seed, sweep.healthy(), beta=beta)

    groups = _groups(sweep)

    assert [g.label for g in groups] == [
        "in_attention kl.beta=0.05", "in_attention kl.beta=0.2",
        "cross_attention kl.beta=0.05", "cross_attention kl.beta=0.2",
        "none kl.beta=0.05", "none kl.beta=0.2",
    ]  # fmt: skip
    for g in groups:
        assert g.seeds == [0, 1, 2]
        assert {r.mode for r in g.runs} == {g.mode}
        assert {r.config["kl"]["beta"] for r in g.runs} == {g.beta}
        assert g.context == {"kl.beta": g.beta}
    # cross_attention's n_memory and in_attention's position are in the settings (they differ across
    # modes) but not in the labels: they do not vary within a mode
    cross = groups[2]
    assert cross.settings["model.conditioning.n_memory"] == 4
    assert cross.settings["model.conditioning.position"] is None
    # the counterpart: same β, the other mode
    assert [g.label for g in counterparts(cross, groups, "in_attention")] == ["in_attention kl.beta=0.05"]
    assert [g.label for g in counterparts(cross, groups, "none")] == ["none kl.beta=0.05"]
    assert counterparts(groups[0], groups, "in_attention") == []


def test_a_setting_varied_within_in_attention_keeps_its_values_apart(sweep):
    for seed in (0, 1):
        sweep.run("in_attention", seed, sweep.healthy(), position="post_norm")
        sweep.run("in_attention", seed, sweep.healthy(), position="pre_norm")
        sweep.run("cross_attention", seed, sweep.healthy())

    groups = _groups(sweep)

    assert [g.label for g in groups] == [
        "in_attention model.conditioning.position=post_norm",
        "in_attention model.conditioning.position=pre_norm",
        "cross_attention",  # position varies within in_attention only
    ]
    assert [{r.config["model"]["conditioning"]["position"] for r in g.runs} for g in groups[:2]] == [
        {"post_norm"}, {"pre_norm"},
    ]  # fmt: skip
    assert all(g.seeds == [0, 1] for g in groups)
    # both positions are in_attention counterparts of cross_attention (same settings outside conditioning)
    assert len(counterparts(groups[2], groups, "in_attention")) == 2


def test_bookkeeping_keys_do_not_split_groups(sweep):
    # every run has its own output_dir, paths.data_dir, data.path, tags, logger.wandb.job_type and seed
    for seed in (0, 1, 2):
        sweep.run("in_attention", seed, sweep.healthy())
        sweep.run("none", seed, sweep.control())
    groups = _groups(sweep)
    assert [(g.label, g.seeds) for g in groups] == [("in_attention", [0, 1, 2]), ("none", [0, 1, 2])]
    assert groups[0].context == {} and groups[0].context_label == ""


def test_a_key_missing_from_some_runs_counts_as_differing(sweep):
    sweep.run("in_attention", 0, sweep.healthy())
    old = sweep.run("in_attention", 1, sweep.healthy())
    text = (old / "config.yaml").read_text()
    (old / "config.yaml").write_text(text.replace("  free_bits: 0.0\n", ""))  # an older config
    groups = _groups(sweep)
    assert sorted(g.label for g in groups) == [
        "in_attention kl.free_bits=0",
        "in_attention kl.free_bits=null",
    ]
    assert {g.free_bits for g in groups} == {0.0}  # absent free bits are off
