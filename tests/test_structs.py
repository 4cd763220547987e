"""The C structs in etran/kernel/bpf/shared.h and their ctypes mirrors in etran/kernel/structs.py agree.

The truth is the BTF that clang emits for the compiled objects: for each mirrored struct,
the size, the field names and every field's offset must match.
"""

from __future__ import annotations

import ctypes
import functools
import json
import subprocess

import pytest

from etran.kernel import build
from etran.kernel.structs import ENUM_MIRRORS, MIRRORS

pytestmark = pytest.mark.kernel


@functools.cache
def btf_structs(family: str) -> dict[str, dict]:
    obj = build.compile_object(family)
    dump = json.loads(subprocess.run(["bpftool", "-j", "btf", "dump", "file", str(obj)],
                                     capture_output=True, text=True, check=True).stdout)
    return {t["name"]: t for t in dump["types"] if t["kind"] in ("STRUCT", "UNION") and t.get("name")}


def test_every_mirror_names_a_real_program_family():
    assert MIRRORS, "no mirrored structs"
    for c_name, (_, family) in MIRRORS.items():
        build.source_path(family)


@pytest.mark.parametrize("c_name", sorted(MIRRORS))
def test_mirror_matches_btf(c_name):
    mirror, family = MIRRORS[c_name]
    structs = btf_structs(family)
    assert c_name in structs, f"struct {c_name} is not in the BTF of {family}.bpf.c (is it used there?)"
    btf = structs[c_name]
    assert ctypes.sizeof(mirror) == btf["size"], f"{c_name}: C is {btf['size']} bytes, Python {ctypes.sizeof(mirror)}"
    c_fields = [(m["name"], m["bits_offset"] // 8) for m in btf["members"]]
    py_fields = [(name, getattr(mirror, name).offset) for name, *_ in mirror._fields_]
    assert py_fields == c_fields, f"{c_name}: fields differ"


@functools.cache
def btf_enums(family: str) -> dict[str, dict[str, int]]:
    obj = build.compile_object(family)
    dump = json.loads(subprocess.run(["bpftool", "-j", "btf", "dump", "file", str(obj)],
                                     capture_output=True, text=True, check=True).stdout)
    return {t["name"]: {v["name"]: v["val"] for v in t["values"]}
            for t in dump["types"] if t["kind"] == "ENUM" and t.get("name")}


@pytest.mark.parametrize("c_name", sorted(ENUM_MIRRORS))
def test_enum_mirror_matches_btf(c_name):
    mirror, family = ENUM_MIRRORS[c_name]
    enums = btf_enums(family)
    assert c_name in enums, f"enum {c_name} is not in the BTF of {family}.bpf.c (is it used there?)"
    assert {name: m.value for name, m in mirror.__members__.items()} == enums[c_name]
