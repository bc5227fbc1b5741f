"""Benchmark annotation readers: tiny samples of every format, the real fixture files, errors."""

from __future__ import annotations

import csv
import json

import pytest

from mllm3d.shared.annotations import load_queries, save_queries
from mllm3d.shared.errors import BadInputError
from mllm3d.shared.scene import Query


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_scanrefer(tmp_path):
    p = _write(tmp_path, "ScanRefer_filtered_val.json", [
        {"scene_id": "scene0011_00", "object_id": "12", "object_name": "chair", "ann_id": "3",
         "description": "the brown chair by the table.", "token": ["the", "brown"]},
    ])
    (q,) = load_queries(p)
    assert (q.scene_id, q.query_id, q.target_ids, q.source, q.kind) == (
        "scene0011_00", "scene0011_00_12_3", [12], "scanrefer", None)
    assert q.text == "the brown chair by the table." and q.extra == {"object_name": "chair", "ann_id": "3",
                                                                     "token": ["the", "brown"]}


def test_nr3d_csv(tmp_path):
    p = tmp_path / "nr3d_sample.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["assignmentid", "scan_id", "target_id", "utterance", "instance_type"])
        w.writerow(["7", "scene0000_00", "33", "the lamp between the beds", "lamp"])
        w.writerow(["8", "scene0000_00", " 4", "facing the door, the left chair", "chair"])
    qs = load_queries(p)
    assert [q.target_ids for q in qs] == [[33], [4]]
    assert qs[1].text == "facing the door, the left chair" and qs[1].extra["instance_type"] == "chair"
    assert all(q.source == "nr3d" for q in qs) and len({q.query_id for q in qs}) == 2


def test_multi3drefer_zero_and_multi_target(tmp_path):
    p = _write(tmp_path, "multi3drefer_val.json", [
        {"scene_id": "scene0011_00", "object_ids": [], "object_name": "piano", "ann_id": 0,
         "description": "the piano in the corner", "eval_type": "zt_w_d"},
        {"scene_id": "scene0011_00", "object_ids": [1, 2, 5], "object_name": "chair", "ann_id": 1,
         "description": "all the chairs around the table", "eval_type": "mt"},
    ])
    zt, mt = load_queries(p)
    assert zt.target_ids == [] and zt.kind == "zt_w_d" and zt.extra["eval_type"] == "zt_w_d"
    assert mt.target_ids == [1, 2, 5] and mt.kind == "mt" and mt.query_id == "scene0011_00_1"


def test_intent3d_list_and_dict(tmp_path):
    recs = {"0": {"scan_id": "scene0001_00", "target_id": [4, 9], "utterance": "I want to sit down and rest"},
            "1": {"scene_id": "scene0002_00", "target_id": [3], "description": "I need to read at night"}}
    qs = load_queries(_write(tmp_path, "val_samples_dict_vg_format_clean_duplicate.json", recs))
    assert [(q.scene_id, q.target_ids, q.kind) for q in qs] == [
        ("scene0001_00", [4, 9], "implicit"), ("scene0002_00", [3], "implicit")]
    assert qs[1].text == "I need to read at night"
    assert load_queries(_write(tmp_path, "intent.json", list(recs.values())), fmt="intent3d")[0].target_ids == [4, 9]


def test_instruct3d(tmp_path):
    p = _write(tmp_path, "instruct3d_val.json", [
        {"scene_id": "0a5c013435", "object_id": [], "object_name": "none", "description": "where is the piano?",
         "images": ["a.jpg", "b.jpg"]},
        {"scene_id": "0a5c013435", "object_id": [17], "object_name": "kettle", "description": "boil some water",
         "image": "c.jpg"},
    ])
    a, b = load_queries(p)
    assert a.target_ids == [] and a.extra["images"] == ["a.jpg", "b.jpg"] and a.source == "instruct3d"
    assert b.target_ids == [17] and b.extra["image"] == "c.jpg" and b.kind == "implicit"


def test_reason3d_int_or_list(tmp_path):
    p = _write(tmp_path, "reason3d_train.json", [
        {"scene_id": "scene0005_00", "object_id": 7, "object_name": "bed", "question": "where can I sleep?",
         "type": "scannet"},
        {"scene_id": "17DRP5sb8fy", "object_id": [1, 2], "object_name": "chair", "question": "where to sit?",
         "type": "mp3d"},
    ])
    a, b = load_queries(p)
    assert a.target_ids == [7] and b.target_ids == [1, 2] and b.extra["type"] == "mp3d"
    assert a.query_id != b.query_id and a.source == "reason3d"


def test_own_format_round_trip_json_and_jsonl(tmp_path):
    qs = [
        Query("synth_0000", "synth_0000_q00", "the red chair", [3], "synthetic", "explicit", {"color": "red"}),
        Query("synth_0000", "synth_0000_q01", "nothing here", [], "synthetic", "explicit"),
        Query("scene0001_00", "x", "unknown target", None),
    ]
    for name in ("q.json", "q.jsonl"):
        path = save_queries(tmp_path / "sub" / name, qs)
        assert load_queries(path) == qs
    assert json.loads((tmp_path / "sub" / "q.json").read_text())[0]["target_ids"] == [3]


def test_duplicate_ids_get_suffixes(tmp_path):
    rec = {"scene_id": "s", "object_id": 1, "ann_id": 0, "description": "a chair"}
    qs = load_queries(_write(tmp_path, "scanrefer.json", [rec, rec]))
    assert [q.query_id for q in qs] == ["s_1_0", "s_1_0~2"]


def test_errors_name_file_and_place(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[\n  {"scene_id": "s",\n   "text": oops}\n]')
    with pytest.raises(BadInputError, match=r"bad.json: invalid JSON at line 3, column 12"):
        load_queries(bad)
    badl = tmp_path / "bad.jsonl"
    badl.write_text('{"scene_id": "s", "query_id": "a", "text": "x"}\n{nope\n')
    with pytest.raises(BadInputError, match=r"bad.jsonl: invalid JSON at line 2"):
        load_queries(badl)
    empty = _write(tmp_path, "scanrefer_empty.json", [
        {"scene_id": "s", "object_id": 1, "ann_id": 0, "description": "ok"},
        {"scene_id": "s", "object_id": 1, "ann_id": 1, "description": "   "},
    ])
    with pytest.raises(BadInputError, match=r"scanrefer_empty.json: record 1: empty text"):
        load_queries(empty)
    notext = _write(tmp_path, "own.json", [{"scene_id": "s", "query_id": "a", "target_ids": [1]}])
    with pytest.raises(BadInputError, match=r"own.json: cannot tell the annotation format"):
        load_queries(notext)
    with pytest.raises(BadInputError, match=r"own.json: record 0: no text field"):
        load_queries(notext, fmt="own")
    badid = _write(tmp_path, "sr.json", [{"scene_id": "s", "object_id": "x1", "description": "a chair"}])
    with pytest.raises(BadInputError, match=r"sr.json: record 0: object_id must be an integer"):
        load_queries(badid)
    with pytest.raises(BadInputError, match="not found"):
        load_queries(tmp_path / "missing.json")


def test_real_fixture_files(query_annotations_dir, scannet_scene_dir):
    files = sorted(query_annotations_dir.glob("*.json")) + sorted(query_annotations_dir.glob("*.csv"))
    assert len(files) == 4
    for f in files:
        qs = load_queries(f)
        assert len(qs) == 250, f
        assert len({q.query_id for q in qs}) == 250
        want = "nr3d" if "nr3d" in f.name else "scanrefer"
        assert {q.source for q in qs} == {want}
        assert all(q.scene_id.startswith("scene") and len(q.target_ids) == 1 and q.text for q in qs)
    sr = load_queries(query_annotations_dir / "seqvlm_scanrefer_250.json")
    assert (sr[0].scene_id, sr[0].target_ids, sr[0].extra["obj_name"]) == ("scene0606_00", [27], "chair")
    nr = load_queries(query_annotations_dir / "vlmgrounder_nr3d_250.csv")
    assert (nr[0].scene_id, nr[0].target_ids) == ("scene0645_00", [33])
    assert nr[0].text == "This lamp is on a table between the beds."
    per_scene = load_queries(scannet_scene_dir / "queries_scene0378_00.json")
    assert [q.source for q in per_scene] == ["scanrefer"] * 4 + ["nr3d"] * 2
    assert [q.target_ids[0] for q in per_scene] == [43, 40, 37, 35, 40, 37]
    assert {q.scene_id for q in per_scene} == {"scene0378_00"}


def test_zero_target_records_in_single_target_formats(tmp_path):
    sr = load_queries(_write(tmp_path, "scanrefer_zt.json", [
        {"scene_id": "s", "object_id": [], "ann_id": 4, "description": "the piano (there is none)"},
        {"scene_id": "s", "object_id": "7", "ann_id": 4, "description": "the chair"},
    ]), fmt="scanrefer")  # (auto would call a list object_id instruct3d)
    assert [(q.query_id, q.target_ids) for q in sr] == [("s_none_4", []), ("s_7_4", [7])]
    ri = load_queries(_write(tmp_path, "nr3d_zt.json", [
        {"scan_id": "s", "target_id": [], "caption": "the missing lamp"},
    ]))
    assert (ri[0].query_id, ri[0].target_ids) == ("nr3d_s_none_0000", [])
    p = tmp_path / "nr3d_zt.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scan_id", "target_id", "utterance"])
        w.writerow(["s", "[]", "no such thing"])
    (q,) = load_queries(p)
    assert q.target_ids == [] and q.query_id == "nr3d_s_none_0000"


def test_object_of_lists_uses_only_benchmark_names_as_source(tmp_path):
    by_scene = {
        "scene0000_00": [{"scan_id": "scene0000_00", "target_id": [4], "utterance": "I want to sit"}],
        "scene0001_00": [{"scan_id": "scene0001_00", "target_id": [2, 3], "utterance": "I need light"}],
    }
    qs = load_queries(_write(tmp_path, "val_samples_dict_vg_format_clean_duplicate.json", by_scene))
    assert [q.source for q in qs] == ["intent3d", "intent3d"]
    assert [q.scene_id for q in qs] == ["scene0000_00", "scene0001_00"]
    mixed = {"ScanRefer": [{"scene_id": "s", "object_id": 1, "ann_id": 0, "description": "a chair"}],
             "whatever": [{"scan_id": "s", "target_id": 2, "caption": "a lamp"}]}
    assert [q.source for q in load_queries(_write(tmp_path, "mixed.json", mixed))] == ["scanrefer", "referit"]


def test_file_name_pattern_beats_record_keys(tmp_path):
    # a scalar target_id with `utterance` looks like referit by its keys; the file name says intent3d
    recs = [{"scan_id": "scene0002_00", "target_id": 5, "utterance": "I am thirsty", "ann_id": 9}]
    (q,) = load_queries(_write(tmp_path, "train_samples_dict_vg_format.json", recs))
    assert (q.source, q.kind, q.query_id, q.target_ids) == ("intent3d", "implicit", "scene0002_00_9", [5])
    (r,) = load_queries(_write(tmp_path, "other.json", recs))
    assert r.source == "referit" and r.kind is None
    # own-format records keep their format whatever the file is called
    own = save_queries(tmp_path / "reason3d_val.json", [Query("s", "q1", "where to sleep?", [3], "reason3d",
                                                              "implicit")])
    assert load_queries(own)[0].query_id == "q1"


def test_reason3d_ids_do_not_depend_on_position(tmp_path):
    a = {"scene_id": "scene0005_00", "object_id": 7, "question": "where can I sleep?", "type": "scannet"}
    b = {"scene_id": "scene0005_00", "object_id": [2, 1], "question": "where to sit?", "type": "scannet"}
    c = {"scene_id": "scene0005_00", "object_id": [3], "question": "where to sit?", "type": "scannet"}
    first = {q.text + str(q.target_ids): q.query_id for q in load_queries(_write(tmp_path, "reason3d_a.json", [a, b, c]))}
    second = {q.text + str(q.target_ids): q.query_id for q in load_queries(_write(tmp_path, "reason3d_b.json", [c, a, b]))}
    assert first == second and len(set(first.values())) == 3
    assert all(v.startswith("scene0005_00_") for v in first.values())
    with_id = load_queries(_write(tmp_path, "reason3d_c.json", [{**a, "ann_id": 12}]))
    assert with_id[0].query_id == "scene0005_00_12"
