"""Plate kernels: distance against its definition, the native module, fusion and the site join."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import _plates_py, plates
from schemas.plate_grammar import N_CODES, PROVINCES, normalise, plate_format
from tests.kernels import reference_plates as ref

# plates.md §0.2 test vectors (local province 浙)
VECTORS = [
    ("浙D12345", "浙D12345", 0.0),
    ("浙D12345", "浙D1234S", 0.25),
    ("浙D8B001", "浙DBB001", 0.25),
    ("湘D12345", "浙D12345", 0.30),
    ("湘D12345", "鄂D12345", 0.50),
    ("浙D1234挂", "浙D1234", 0.50),
    ("浙D12345", "浙D1234", 0.50),
    ("浙D12345", "浙D1?345", 0.30),
    ("浙D12345", "浙D12845", 1.0),
    ("浙D12345", "浙D13245", 2.0),
]
ALPHABET = "浙湘鄂京粤?挂" + "DQ0128BZ5S6GA"


def test_native_module_is_loaded_when_required():
    if os.environ.get("KERNELS_REQUIRE_NATIVE") == "1":
        assert plates.NATIVE, "the pure-Python twin was loaded: build with `make native`"
        assert plates._impl.__file__.endswith(".so")
    assert int(plates.NATIVE) == plates._impl.CYTHON_MODULE


@pytest.mark.parametrize(("a", "b", "want"), VECTORS)
def test_published_vectors(a, b, want):
    model = plates.cost_model("浙")
    assert plates.distance(a, b, model) == pytest.approx(want)
    assert plates.distance(b, a, model) == pytest.approx(want)
    assert ref.distance(a, b, "浙") == pytest.approx(want)


plate_text = st.text(alphabet=ALPHABET, min_size=0, max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(plate_text, min_size=1, max_size=6),
    st.lists(plate_text, min_size=1, max_size=6),
    st.sampled_from([None, "浙"]),
)
def test_kernel_equals_definition_and_twin(a, b, local):
    model = plates.cost_model(local)
    got = plates.many_to_many(a, b, model)
    want = np.array([[ref.distance(x, y, local) for y in b] for x in a])
    np.testing.assert_allclose(got, want, atol=1e-9)
    ea, eb = plates.EncodedPlates.of(a, model), plates.EncodedPlates.of(b, model)
    twin = _plates_py.cdist(
        ea.codes,
        ea.lengths,
        ea.indel,
        eb.codes,
        eb.lengths,
        eb.indel,
        model.sub,
        N_CODES,
        plates.NO_CUTOFF,
    )
    np.testing.assert_array_equal(twin, (want * 100).round().astype(np.int32))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(plate_text, min_size=1, max_size=5),
    st.lists(plate_text, min_size=1, max_size=5),
    st.sampled_from([0.0, 0.5, 1.0, 1.5]),
)
def test_cutoff_is_exact_below_and_a_lower_bound_above(a, b, cut):
    exact = plates.many_to_many(a, b)
    capped = plates.many_to_many(a, b, max_cost=cut)
    below = exact <= cut + 1e-9
    np.testing.assert_allclose(capped[below], exact[below])
    assert np.all(capped[~below] > cut)
    assert np.all(capped[~below] <= exact[~below] + 1e-9)


def test_pairwise_row_by_row():
    model = plates.cost_model("浙")
    a = plates.EncodedPlates.of([v[0] for v in VECTORS], model)
    b = plates.EncodedPlates.of([v[1] for v in VECTORS], model)
    got = plates._impl.pairwise(
        a.codes,
        a.lengths,
        a.indel,
        b.codes,
        b.lengths,
        b.indel,
        model.sub,
        N_CODES,
        plates.NO_CUTOFF,
    )
    np.testing.assert_array_equal(got, [round(v[2] * 100) for v in VECTORS])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 4), st.integers(0, 4), st.data())
def test_order_preserving_assignment_is_optimal(n, m, data):
    values = st.one_of(st.floats(0, 12), st.just(float("inf")))
    cost = [[data.draw(values) for _ in range(m)] for _ in range(n)]
    arr = np.array(cost, dtype=np.float64).reshape(n, m)
    for impl in (plates._impl, _plates_py):
        match = impl.align_in_order(np.ascontiguousarray(arr), 4.5, 4.5)
        cols = [c for c in match if c >= 0]
        assert cols == sorted(cols) and len(set(cols)) == len(cols)
        total = sum(arr[r, c] for r, c in enumerate(match) if c >= 0)
        total += 4.5 * (n - len(cols)) + 4.5 * (m - len(cols))
        assert total == pytest.approx(ref.best_order_preserving_cost(cost, n, m, 4.5, 4.5))


@pytest.mark.parametrize(
    ("raw", "canonical", "fmt"),
    [
        ("浙D·12345", "浙D12345", "ordinary"),
        ("浙d 1234o", "浙D12340", "ordinary"),
        ("京0A123", "京OA123", None),
        ("粤Z1234港", "粤Z1234港", "hkmo"),
        ("浙D1234挂", "浙D1234挂", "suffixed"),
        ("浙AD12345", "浙AD12345", "nev_small"),
        ("浙A12345F", "浙A12345F", "nev_large"),
        ("", "", None),
        ("@@@", "", None),
        ("ＡＢ", "AB", None),
    ],
)
def test_normalise_and_validate(raw, canonical, fmt):
    assert normalise(raw) == canonical
    assert plate_format(canonical) == fmt


def test_local_means_same_province_and_authority():
    assert plates.is_local("浙D12345", "浙D")
    assert not plates.is_local("浙A12345", "浙D")
    assert not plates.is_local("", "浙D")


def test_fusion_prefers_the_confident_read():
    fused = plates.fuse_reads(
        [
            ("浙D12345", [0.99] * 7, 0.93),
            ("浙D1Z345", [0.99, 0.99, 0.99, 0.4, 0.99, 0.99, 0.99], 0.4),
        ]
    )
    assert fused.plate == "浙D12345" and fused.score > 0.9


def test_fusion_of_two_confident_but_different_reads_is_unsure():
    fused = plates.fuse_reads([("浙D12345", [0.99] * 7, 0.93), ("浙D12845", [0.99] * 7, 0.93)])
    assert fused.score < 0.6


def test_fusion_never_mixes_trailer_and_tractor_plates():
    fused = plates.fuse_reads([("浙D1234挂", [0.99] * 7, 0.95), ("浙D12345", [0.9] * 7, 0.5)])
    assert fused.plate == "浙D1234挂" and fused.n_reads == 1


def test_fusion_ignores_unreadable_and_low_confidence_reads():
    assert plates.fuse_reads([("", None, 0.0), ("浙D12345", None, 0.1)]).plate == ""
    assert plates.fuse_reads([]).score == 0.0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0.01, 1.0), min_size=7, max_size=7),
    st.lists(st.lists(st.floats(0.0, 1.0), min_size=7, max_size=7), min_size=1, max_size=5),
    st.lists(st.floats(0.2, 1.0), min_size=6, max_size=6),
)
def test_fusion_of_agreeing_reads_is_the_vote_exactly(first, others, confs):
    """Reads that all show one plate take a shortcut; it must be the full vote to the bit,
    frames of one camera weighted as one witness in both."""
    model = plates.cost_model()
    ccs = [first, *others]
    cams = ["front-1", "front-1", "rear-1", None, "rear-1", "front-1"][: len(ccs)]
    usable = [("浙D12345", cc, c, cam) for cc, c, cam in zip(ccs, confs, cams, strict=False)]
    shortcut = plates.fuse_reads(usable, model)
    weights = plates._witness_weights(cams[: len(usable)])
    full = plates._fuse_voting(usable, model, 1.0, weights)
    assert (shortcut.plate, shortcut.score) == (full.plate, full.score)


def test_frames_of_one_camera_are_one_witness():
    """Three frames of one camera showing a misread are the evidence of one view, not three:
    the same frames from three cameras are stronger evidence."""
    cc = [0.99, 0.99, 0.99, 0.6, 0.99, 0.99, 0.99]
    one_camera = plates.fuse_reads([("浙D12845", cc, 0.6, "front-1")] * 3)
    three = plates.fuse_reads([("浙D12845", cc, 0.6, cam) for cam in ("f-1", "f-2", "r-1")])
    single = plates.fuse_reads([("浙D12845", cc, 0.6, "front-1")])
    assert one_camera.views == 1 and three.views == 3
    assert one_camera.score == pytest.approx(single.score, rel=0.05)
    assert three.score > one_camera.score + 0.2


def test_calibration_is_monotone_and_bounded():
    for source in ("camera", "gateway"):
        for kind in ("one_view", "several_views", "invalid_format"):
            m = plates.calibration(source, kind)
            p = m(np.linspace(0.0, 1.0, 101))
            assert np.all(np.diff(p) >= 0) and p.min() >= 0 and p.max() <= 1
    # a plate of invalid format is never called likely right
    assert plates.calibration("camera", "invalid_format")(1.0) < 0.5


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_camera_join_equals_the_written_out_join(data):
    """``join_camera`` (lists, and a shortcut for one vehicle against one observation) gives the
    assignment of the slow, written-out join, read for read."""
    n_v = data.draw(st.integers(0, 7))
    n_r = data.draw(st.integers(0, 9))
    second = 1_000_000
    times = st.integers(0, 20 * second).map(float)
    t_exp = [data.draw(times) for _ in range(n_v)]
    tau = [data.draw(st.integers(second // 3, 2 * second).map(float)) for _ in range(n_v)]
    lanes = [data.draw(st.integers(1, 3)) for _ in range(n_v)]
    camera_lane = data.draw(st.integers(1, 3))
    read_ts = [data.draw(times) for _ in range(n_r)]
    clash = [float(data.draw(st.booleans())) for _ in range(n_r)]
    params = plates.JoinParams()
    got = plates.join_camera(
        np.array(t_exp, dtype=np.float64),
        np.array(tau, dtype=np.float64),
        np.array(lanes, dtype=np.int64),
        camera_lane,
        np.array(read_ts, dtype=np.float64),
        np.array(clash, dtype=np.float64),
        params,
    )
    want = ref.join_camera(t_exp, tau, lanes, camera_lane, read_ts, clash, params)
    assert got.tolist() == want


def test_site_join_assigns_every_read_to_its_own_vehicle(city_traffic, registry):
    from streams.stages import join_site_reads, measure_passages

    measured, rejected = measure_passages(city_traffic.passages[:800], registry)
    assert not rejected
    ids = {m["passage_id"] for m in measured}
    reads = [r for r in city_traffic.reads if r.get("_passage_id") in ids]
    matched = join_site_reads(measured, reads, registry)
    # the join expects a vehicle at each camera from its speed over the scale; one that was
    # speeding up there (flagged ``acceleration``, never enforceable) can arrive well before
    # that, and its read can go to a neighbour: counted apart, and rare
    speeding_up = {m["passage_id"] for m in measured if "acceleration" in m["flags"]}
    steady = [r for r in reads if r["_passage_id"] not in speeding_up]
    right = wrong = wrong_of_speeding_up = 0
    for m, (front, rear) in zip(measured, matched, strict=True):
        for r in front + rear:
            own = r["_passage_id"] == m["passage_id"]
            speeding = r["_passage_id"] in speeding_up
            right += own and not speeding
            wrong += not own and not speeding
            wrong_of_speeding_up += not own and speeding
    assert right == len(steady) and wrong == 0
    assert wrong_of_speeding_up <= len(reads) // 1000


def test_provinces_are_the_31_civil_ones():
    assert len(PROVINCES) == 31 and len(set(PROVINCES)) == 31
