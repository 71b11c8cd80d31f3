"""Runs the C unit tests (tests/unit_tests.c) and reports each of them."""

import os
import subprocess

from helpers import BUILD


def test_c_unit_tests():
    bits = {}
    for kernel in ("default", "avx2", "portable"):
        env = dict(os.environ, FANYI_GEMM=kernel)
        p = subprocess.run([os.path.join(BUILD, "unit_tests")], capture_output=True, text=True, timeout=120, env=env)
        print(p.stdout, end="")
        assert p.returncode == 0 and "FAIL" not in p.stdout, p.stdout + p.stderr
        assert p.stdout.count("ok ") >= 10
        bits[kernel] = [line for line in p.stdout.splitlines() if line.startswith("bits ")]
    # The vector kernels (AVX-512 where the CPU has it, AVX2) and their portable twins give the same bits.
    assert bits["default"] and bits["default"] == bits["avx2"] == bits["portable"], bits
    # The OpenBLAS backend: within rounding of the fma chain, and batch-invariant bit for bit.
    p = subprocess.run([os.path.join(BUILD, "unit_tests")], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, FANYI_GEMM="openblas"))
    assert p.returncode == 0 and "FAIL" not in p.stdout and "(openblas" in p.stdout, p.stdout + p.stderr


def test_portable_kernel_matches_avx2():
    """FANYI_GEMM=portable forces the C kernel; the whole translation must not change by one bit."""
    from helpers import random_model, run, tmpdir
    d = os.path.join(tmpdir(), "k")
    random_model(d, seed=5)
    q = os.path.join(tmpdir(), "k8")
    random_model(q, seed=5, dtype="int8")
    src = "5 6 7 8\n9 10\n11 12 13 14 15 16\n"
    for model in (d, q):
        args = ["-m", model, "--input", "ids", "--output", "ids", "--beam", "3", "--scores"]
        a = run(args, src, check=0).stdout
        for kernel in ("avx2", "portable"):
            assert run(args, src, check=0, env={"FANYI_GEMM": kernel}).stdout == a, (model, kernel)
        assert a.count(b"\n") == 3


def test_gcc_and_clang_give_the_same_bits():
    """A clang build computes exactly what the gcc build does: kernel hashes and translations."""
    import shutil
    from helpers import BIN, ROOT, Skip, random_model, run, tmpdir
    if not shutil.which("clang"):
        raise Skip("clang is not installed (tools/ensure-deps.sh test installs it)")
    clang_build = os.path.join("build", "clang")
    subprocess.run(["make", "-s", "CC=clang", f"BUILD={clang_build}", f"{clang_build}/unit_tests",
                    f"{clang_build}/fanyi"], cwd=ROOT, check=True, capture_output=True, timeout=600)

    def kernel_bits(build_dir, kernel):
        env = dict(os.environ, FANYI_GEMM=kernel)
        out = subprocess.run([os.path.join(build_dir, "unit_tests")], capture_output=True, text=True, env=env,
                             timeout=120).stdout
        return [line for line in out.splitlines() if line.startswith("bits ")]
    gcc_bits = kernel_bits(BUILD, "default")
    for kernel in ("default", "portable"):
        assert kernel_bits(os.path.join(ROOT, clang_build), kernel) == gcc_bits, kernel
    d = os.path.join(tmpdir(), "bits")
    random_model(d, seed=8, dtype="int8")
    args = ["-m", d, "--input", "ids", "--output", "ids", "--beam", "3", "--scores"]
    src = "5 6 7 8\n9 10\n11 12 13 14 15 16\n"
    for model_args in (args, ["-m", "en-de", "-b", "4", "--scores"]):
        stdin = src if model_args is args else "A man in a red shirt rides a bicycle down the street.\n"
        a = run(model_args, stdin, check=0).stdout
        b = subprocess.run([os.path.join(ROOT, clang_build, "fanyi")] + model_args, input=stdin.encode(),
                           capture_output=True, timeout=120).stdout
        assert a == b and a.strip(), (a, b)
