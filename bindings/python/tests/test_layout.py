"""The ctypes structs against C's sizeof/offsetof (bindings/common/layout.c),
and every function of normkit.h declared in FUNCTIONS."""
import os
import re
import subprocess

import pytest

from normkit import _lib

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory):
    exe = str(tmp_path_factory.mktemp("layout") / "layout")
    subprocess.run([os.environ.get("CC", "cc"), "-std=c99", "-I", os.path.join(ROOT, "include"),
                    os.path.join(ROOT, "bindings", "common", "layout.c"), "-o", exe], check=True)
    out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
    return dict((k, int(v)) for k, v in (line.split() for line in out.splitlines()))


@pytest.mark.parametrize("cname", sorted(_lib.STRUCTS))
def test_struct_layout(c_layout, cname):
    py = _lib.STRUCTS[cname]
    assert c_layout[cname] == __import__("ctypes").sizeof(py)
    c_fields = {k.split(".", 1)[1]: v for k, v in c_layout.items() if k.startswith(cname + ".")}
    assert sorted(c_fields) == sorted(f[0] for f in py._fields_)
    for name, _ in py._fields_:
        assert getattr(py, name).offset == c_fields[name], name


def test_every_header_function_is_declared():
    header = open(os.path.join(ROOT, "include", "normkit.h")).read()
    names = set(re.findall(r"NK_API[^;]*?\b(nk_\w+)\s*\(", header))
    assert names and names == set(_lib.FUNCTIONS)
    for name, (_, argtypes) in _lib.FUNCTIONS.items():
        decl = re.search(r"NK_API[^;]*?\b%s\s*\(([^)]*)\)" % name, header).group(1).strip()
        n = 0 if decl in ("void", "") else decl.count(",") + 1
        assert len(argtypes) == n, name
