#!/usr/bin/env python3
"""Checks NormKit.jl against include/normkit.h without Julia: every
`ccall(sym(:nk_...), Ret, (ArgTypes...), args...)` names a function of the
header, with its return type, argument count and argument C types; the
arguments passed match the types listed; every header function is in
FUNCTION_NAMES and called somewhere; and each Julia struct mirroring a C
struct has the same fields, in order, with the same types.

    check_ccalls.py [--header include/normkit.h] [files.jl ...]

Exit status 0 when all agree. It first runs a self-test on broken snippets.
"""
import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

C_TYPEDEFS = {"nk_status": "int32_t", "nk_dtype": "int32_t"}
# Julia struct name -> C struct name.
STRUCTS = {"TensorDesc": "nk_tensor_desc", "BnOptions": "nk_bn_options", "BnState": "nk_bn_state",
           "GnOptions": "nk_gn_options", "InOptions": "nk_in_options", "LnOptions": "nk_ln_options",
           "SnOptions": "nk_sn_options"}
JL_SCALARS = {
    "Int32": "int32_t", "Cint": "int32_t", "Int64": "int64_t", "Clonglong": "int64_t",
    "UInt64": "uint64_t", "Culonglong": "uint64_t", "Cfloat": "float", "Float32": "float",
    "Cdouble": "double", "Float64": "double", "Cvoid": "void", "Nothing": "void",
    "Cstring": "char*", "UInt8": "char", "Cchar": "char", "Int8": "char",
}


# ---- C side --------------------------------------------------------------------
def strip_comments(s):
    s = re.sub(r"/\*.*?\*/", " ", s, flags=re.S)
    return re.sub(r"//[^\n]*", " ", s)


def c_type(decl, defines):
    """'const float* gamma' -> 'float*'; 'int64_t dims[NK_MAX_DIMS]' -> 'int64_t[8]'."""
    decl = decl.strip()
    arr = ""
    m = re.search(r"\[(\w+)\]\s*$", decl)
    if m:
        n = m.group(1)
        arr = "[%s]" % defines.get(n, n)
        decl = decl[:m.start()]
    decl = re.sub(r"\bconst\b", " ", decl)
    stars = decl.count("*")
    words = decl.replace("*", " ").split()
    if len(words) >= 2 and not (len(words) == 2 and words[0] in ("unsigned", "signed")):
        words = words[:-1]  # drop the parameter or field name
    base = " ".join(words)
    if base == "void" and stars == 0:
        return "void" + arr
    base = C_TYPEDEFS.get(base, base)
    return base + "*" * stars + arr


def parse_header(path):
    text = strip_comments(open(path).read())
    defines = dict(re.findall(r"#define\s+(\w+)\s+(\d+)\s*$", text, flags=re.M))
    funcs = {}
    for m in re.finditer(r"NK_API\s+([^;(]*?)\b(nk_\w+)\s*\(([^)]*)\)\s*;", text):
        ret = c_type(m.group(1) + " x", defines)
        params = m.group(3).strip()
        args = [] if params in ("", "void") else [c_type(p, defines) for p in params.split(",")]
        funcs[m.group(2)] = (ret, args)
    structs = {}
    for m in re.finditer(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;", text, flags=re.S):
        fields = []
        for decl in m.group(2).split(";"):
            if decl.strip():
                name = re.sub(r"\[.*\]", "", decl).replace("*", " ").split()[-1]
                fields.append((name, c_type(decl, defines)))
        structs[m.group(3)] = fields
    return funcs, structs


# ---- Julia side ----------------------------------------------------------------
def split_top(s):
    """Splits at commas outside (), {}, []."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def balanced(text, start):
    """The text inside the parenthesis opening at text[start]."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
    raise ValueError("unbalanced parenthesis at %d" % start)


def jl_type(t):
    t = t.strip()
    m = re.fullmatch(r"(Ptr|Ref)\{(.+)\}", t)
    if m:
        inner = jl_type(m.group(2))
        return None if inner is None else inner + "*"
    m = re.fullmatch(r"NTuple\{(\d+),\s*(.+)\}", t)
    if m:
        inner = jl_type(m.group(2))
        return None if inner is None else "%s[%s]" % (inner, m.group(1))
    if t in STRUCTS:
        return STRUCTS[t]
    return JL_SCALARS.get(t)


def strip_jl_comments(text):
    text = re.sub(r'"""[\s\S]*?"""', lambda m: "\n" * m.group(0).count("\n"), text)
    return re.sub(r"#[^\n]*", "", text)


def check_julia(text, funcs, structs, where="<julia>", compared=None):
    errors, called = [], set()
    text = strip_jl_comments(text)
    for m in re.finditer(r"\bccall\s*\(", text):
        line = text.count("\n", 0, m.start()) + 1
        loc = "%s:%d" % (where, line)
        try:
            args = split_top(balanced(text, m.end() - 1))
        except ValueError as e:
            errors.append("%s: %s" % (loc, e))
            continue
        if len(args) < 3:
            errors.append("%s: ccall with %d arguments" % (loc, len(args)))
            continue
        fm = re.fullmatch(r"sym\(\s*:(\w+)\s*\)", args[0])
        if not fm:
            errors.append("%s: ccall target %r is not sym(:nk_...)" % (loc, args[0]))
            continue
        name = fm.group(1)
        called.add(name)
        if name not in funcs:
            errors.append("%s: %s is not declared in normkit.h" % (loc, name))
            continue
        cret, cargs = funcs[name]
        jret = jl_type(args[1])
        if jret != cret:
            errors.append("%s: %s returns %s in C, ccall says %s (%s)" % (loc, name, cret, args[1], jret))
        tup = args[2].strip()
        if not (tup.startswith("(") and tup.endswith(")")):
            errors.append("%s: %s: argument types %r are not a tuple" % (loc, name, tup))
            continue
        jtypes = split_top(tup[1:-1])
        if len(jtypes) != len(cargs):
            errors.append("%s: %s takes %d arguments in C, ccall lists %d types"
                          % (loc, name, len(cargs), len(jtypes)))
        values = args[3:]
        # Every array whose address is passed (pointer(v), ptr(v), ptrd(v)) must
        # be named by the GC.@preserve that encloses this ccall in its function.
        addressed = set()
        for v in values:
            addressed |= set(re.findall(r"\b(?:pointer|ptr|ptrd)\(\s*(\w+)\s*\)", v))
        if addressed:
            fstart = max(text.rfind("\nfunction ", 0, m.start()), 0)
            pres = list(re.finditer(r"GC\.@preserve\s+([\w\s]+?)\s+begin", text[fstart:m.start()]))
            names = set(pres[-1].group(1).split()) if pres else set()
            missing = sorted(addressed - names)
            if missing:
                errors.append("%s: %s: pointers to %s passed outside GC.@preserve of them"
                              % (loc, name, ", ".join(missing)))
        if len(values) != len(jtypes):
            errors.append("%s: %s: %d types but %d values" % (loc, name, len(jtypes), len(values)))
        for i, (jt, ct) in enumerate(zip(jtypes, cargs)):
            got = jl_type(jt)
            if got != ct:
                errors.append("%s: %s argument %d is %s in C, ccall says %s (%s)"
                              % (loc, name, i + 1, ct, jt, got))
    for m in re.finditer(r"^\s*(?:mutable\s+)?struct\s+(\w+)\s*\n(.*?)^\s*end\b", text, flags=re.M | re.S):
        jname = m.group(1)
        if jname not in STRUCTS:
            continue
        cname = STRUCTS[jname]
        jfields = re.findall(r"^\s*(\w+)::(.+?)\s*$", m.group(2), flags=re.M)
        cfields = structs.get(cname)
        if cfields is None:
            errors.append("%s: struct %s mirrors %s, which normkit.h lacks" % (where, jname, cname))
            continue
        jf = [(n, jl_type(t)) for n, t in jfields]
        if compared is not None:
            compared.add(jname)
        if jf != cfields:
            errors.append("%s: struct %s differs from C %s:\n  julia %s\n  C     %s"
                          % (where, jname, cname, jf, cfields))
    return errors, called


def self_test(funcs, structs):
    """The checker must catch each kind of mistake."""
    bad = {
        "unknown function": "ccall(sym(:nk_nope), Int32, ())",
        "argument count": "ccall(sym(:nk_version), Int32, (Int32,), 1)",
        "argument type": "ccall(sym(:nk_set_num_threads), Int32, (Int64,), n)",
        "return type": "ccall(sym(:nk_get_stream_threshold), Int32, ())",
        "pointer type": "ccall(sym(:nk_bn_partial_stats), Int32, (Ref{TensorDesc}, Ptr{Cvoid}, Ref{Int64}, Ptr{Cfloat}, Ptr{Cdouble}), d, x, c, m, v)",
        "values vs types": "ccall(sym(:nk_set_num_threads), Int32, (Int32,))",
        "unpreserved pointer": "function f(x)\n    ccall(sym(:nk_bn_options_init), Cvoid, (Ref{BnOptions},), pointer(x))\nend",
        "struct field": "struct BnOptions\n    struct_size::UInt64\n    epsilon::Cdouble\nend\n",
    }
    for what, snippet in bad.items():
        errs, _ = check_julia(snippet, funcs, structs)
        if not errs:
            return "self-test: a wrong %s was not caught" % what
    good = "ccall(sym(:nk_bn_merge_stats), Int32, (Int64, Int64, Ptr{Int64}, Ptr{Cdouble}, Ptr{Cdouble}, Ref{Int64}, Ptr{Cdouble}, Ptr{Cdouble}), C, P, a, b, c, d, e, f)"
    errs, _ = check_julia(good, funcs, structs)
    if errs:
        return "self-test: a correct ccall was rejected: %s" % errs
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--header", default=os.path.join(ROOT, "include", "normkit.h"))
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    files = a.files or [os.path.join(HERE, "src", f) for f in sorted(os.listdir(os.path.join(HERE, "src")))
                        if f.endswith(".jl")]
    funcs, structs = parse_header(a.header)
    if not funcs:
        print("no NK_API functions found in %s" % a.header)
        return 1
    msg = self_test(funcs, structs)
    if msg:
        print(msg)
        return 1
    errors, called, text_all, compared = [], set(), "", set()
    for f in files:
        text = open(f).read()
        text_all += text
        e, c = check_julia(text, funcs, structs, os.path.relpath(f, ROOT), compared)
        errors += e
        called |= c
    for name in sorted(set(funcs) - called):
        errors.append("%s (normkit.h) is never ccall'ed" % name)
    listed = set(re.findall(r":(nk_\w+)", (re.search(r"FUNCTION_NAMES\s*=\s*\[(.*?)\]", text_all, re.S)
                                             or re.search("", "")).group(0)))
    if listed != set(funcs):
        errors.append("FUNCTION_NAMES differs from normkit.h: missing %s, extra %s"
                      % (sorted(set(funcs) - listed), sorted(listed - set(funcs))))
    for name in STRUCTS.values():
        if name not in structs:
            errors.append("normkit.h lacks struct %s" % name)
    for jname, cname in STRUCTS.items():
        if cname in structs and jname not in compared:
            errors.append("no Julia struct %s for %s" % (jname, cname))
    for e in errors:
        print(e)
    n = len(re.findall(r"\bccall\s*\(", strip_jl_comments(text_all)))
    print("%d ccalls over %d functions and %d structs (%d compared) checked against %s: %s"
          % (n, len(funcs), len(structs), len(compared), os.path.relpath(a.header, ROOT),
             "%d problems" % len(errors) if errors else "all agree"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
