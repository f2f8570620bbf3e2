"""The harder generator: canary rollouts, a harmless component deploy next to each cause, and
rollbacks (`generator.world`), consistent between the version labels and the effects."""

from __future__ import annotations

from datetime import date

import numpy as np

from tracehouse.generator.traces import simulate_day
from tracehouse.generator.world import (
    US_PER_DAY,
    US_PER_S,
    Timeline,
    build_world,
    rollout_u,
    truth_records,
    us_to_iso,
)

EPOCH = date(2026, 1, 1)


def test_a_canary_carries_the_new_label_on_its_share_until_full() -> None:
    tl = Timeline([-(2**62)], ["v1"])
    start, full = 1_000 * US_PER_S, 1_000 * US_PER_S + 4 * 3600 * US_PER_S
    tl.set(start, "v2", full_us=full, share=0.2, salt=7)
    t = np.arange(start - 3600 * US_PER_S, full + 3600 * US_PER_S, 997_003, dtype=np.int64)
    labels = np.asarray(tl.values)[tl.index_at(t)]
    before, canary, after = t < start, (t >= start) & (t < full), t >= full
    assert (labels[before] == "v1").all() and (labels[after] == "v2").all()
    share = float((labels[canary] == "v2").mean())
    assert 0.17 < share < 0.23
    on = rollout_u(t[canary], 7) < 0.2  # the very draw every timeline of the deploy reads
    assert ((labels[canary] == "v2") == on).all()


def test_every_deploy_pattern_appears_and_the_truth_names_them() -> None:
    worlds = [build_world(seed, EPOCH, date(2026, 3, 31)) for seed in (2, 4, 6)]
    incs = [i for w in worlds for i in w.incidents if i.cause]
    assert any(i.full_us > i.start_us for i in incs)  # a cause that shipped as a canary
    assert any(i.full_us == i.start_us for i in incs)  # and one at once
    assert {i.ended_by for i in incs} == {"fix", "rollback"}
    assert all(i.shipped_with for i in incs)  # a harmless version minutes from every cause
    for w in worlds:
        comps = [d for d in w.deploys if d.component_only]
        assert comps and all(not d.release_sha for d in comps)
        causes = {d.time_us for d in w.deploys if not d.component_only}
        for d in comps:  # 2-20 minutes from a release
            assert min(abs(d.time_us - t) for t in causes) <= 20 * 60 * US_PER_S
    rows = truth_records(worlds[0], worlds[0].incidents[-1].end_us)
    assert rows and all({"full_time", "shipped_with", "ended_by", "rollout_share"} <= set(r)
                        for r in rows)


def test_a_rollback_serves_the_old_label_and_no_label_is_reused() -> None:
    w = build_world(2, EPOCH, date(2026, 3, 31))
    for key, tl in w.timelines.items():
        for i, value in enumerate(tl.values):
            # a label comes back only as a rollback to the one the last change replaced
            assert value not in tl.values[:i] or (i >= 2 and value == tl.values[i - 2]), key
    rolled = [i for i in w.incidents if i.ended_by == "rollback"]
    assert rolled
    for inc in rolled:
        dims = [k for k, tl in w.timelines.items() if inc.cause and inc.cause.split("=")[1]
                in tl.values]
        for k in dims:
            tl = w.timelines[k]
            after = np.asarray(tl.values)[tl.index_at(np.array([inc.end_us + US_PER_S]))][0]
            before = np.asarray(tl.values)[tl.index_at(np.array([inc.start_us - US_PER_S]))][0]
            assert after == before, (inc.name, k)


def test_a_canary_incident_hits_exactly_the_traces_on_the_new_version() -> None:
    for seed in (2, 4, 6, 8):
        w = build_world(seed, EPOCH, date(2026, 3, 31))
        canaries = [i for i in w.incidents if i.full_us > i.start_us
                    and i.kind == "citation_mismatch"]
        if canaries:
            break
    inc = canaries[0]
    day = date.fromordinal(date(1970, 1, 1).toordinal() + inc.start_us // US_PER_DAY)
    tr = simulate_day(w, day, 4000)
    t0 = tr["t0"]
    in_canary = (t0 >= inc.start_us) & (t0 < inc.full_us)
    rel = w.timelines["release_sha"]
    on_new = np.asarray(rel.values)[rel.index_at(t0)] == inc.cause.split("=")[1]
    assert (inc.active(t0)[in_canary] == on_new[in_canary]).all()
    assert 0 < on_new[in_canary].mean() < 0.35, us_to_iso(inc.start_us)
