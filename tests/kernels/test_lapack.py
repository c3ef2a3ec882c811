"""kernels.lapack: dsyev's values bit for bit, dsyevr's top vectors to rounding, one reduction; every routine
the one scipy's wrappers call (bit for bit), called without holding Python's GIL."""

import threading
import time

import numpy as np
import pytest
import scipy.linalg
import threadpoolctl
from scipy.linalg import blas
from scipy.linalg import lapack as scipy_lapack

from orthoscope.kernels import lapack
from orthoscope.kernels.lapack import gram_update, values_and_top, values_only


def reference(A: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    n = A.shape[0]
    vectors = scipy.linalg.eigh(A, lower=True, subset_by_index=[n - top, n - 1], driver="evr")[1]
    return scipy.linalg.eigh(A, eigvals_only=True, lower=True, driver="ev"), vectors


def f2py_route(A: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """values_and_top's steps through scipy's f2py wrappers (dormtr, which scipy does not wrap, aside)."""
    n = A.shape[0]
    lwork = int(scipy_lapack.dsytrd_lwork(n, lower=1)[0])
    reflectors, d, e, tau, info = scipy_lapack.dsytrd(A, lower=1, lwork=lwork)
    values, _ = scipy_lapack.dsterf(d, e)
    found, w, block, split, _ = scipy_lapack.dstebz(d, e, 3, 0.0, 0.0, n - top + 1, n, 0.0, b"B")
    Z = np.asfortranarray(scipy_lapack.dstein(d, e, w[:top], block, split)[0][:, :top])
    lapack._with_workspace("dormtr", b"L", b"L", b"N", n, top, np.asfortranarray(reflectors), n, tau, Z, n)
    return values, Z[:, np.argsort(w[:top], kind="stable")]


def symmetric(n: int, seed: int) -> np.ndarray:
    X = np.random.default_rng(seed).standard_normal((n + 3, n)) * np.logspace(0, -3, n)
    return np.asfortranarray(X.T @ X)


def spaced(A: np.ndarray) -> np.ndarray:
    """A view of A's numbers every other row and column of a larger array (not contiguous)."""
    big = np.zeros((2 * A.shape[0], 2 * A.shape[1]), order="F")
    big[::2, ::2] = A
    return big[::2, ::2]


@pytest.mark.parametrize(("rows", "cols", "decay"), [(300, 128, 0.0), (700, 256, 3.0), (256, 256, 6.0)])
def test_values_exact_and_vectors_to_rounding(rows, cols, decay):
    X = np.random.default_rng(cols).standard_normal((rows, cols)) * np.logspace(0, -decay, cols)
    A = np.asfortranarray(X.T @ X)
    values, vectors = values_and_top(A, 10)
    ref_values, ref_vectors = reference(A, 10)
    assert np.array_equal(values, ref_values)  # the same reduction and dsterf as dsyev: bit for bit
    assert vectors.shape == (cols, 10)
    np.testing.assert_allclose(np.abs((vectors * ref_vectors).sum(0)), 1.0, atol=1e-12)  # a sign apart
    np.testing.assert_allclose(A @ vectors, vectors * ref_values[-10:], atol=1e-9 * ref_values[-1])


@pytest.mark.parametrize("n", [2, 3, 17, 130])
def test_every_step_bit_for_bit_that_of_scipy_s_wrappers(n):
    A = symmetric(n, n)
    top = min(n, 10)
    values, vectors = values_and_top(A, top)
    ref_values, ref_vectors = f2py_route(A, top)
    assert np.array_equal(values, ref_values) and np.array_equal(vectors, ref_vectors)
    strided = spaced(A)
    assert np.array_equal(values_and_top(strided, top)[1], vectors)  # read as the matrix, not as its buffer
    reversed_ = A[::-1, ::-1]  # the same matrix reversed: its vectors' rows reversed (to rounding)
    assert np.array_equal(values_and_top(reversed_, top)[0], f2py_route(np.asfortranarray(reversed_), top)[0])


@pytest.mark.parametrize("n", [1, 2, 5, 64, 200])
def test_values_only_is_eigh_ev_bit_for_bit(n):
    A = symmetric(n, n)
    ref = scipy.linalg.eigh(A, eigvals_only=True, lower=True, driver="ev")
    assert np.array_equal(values_only(spaced(A)), ref)  # a non-contiguous view: copied
    assert np.array_equal(values_only(np.ascontiguousarray(A)), ref)  # C order: copied, same numbers
    B = A.copy(order="F")
    assert np.array_equal(values_only(B), ref) and (n < 5 or not np.array_equal(B, A))  # F order: overwritten
    assert values_only(np.zeros((0, 0))).shape == (0,)


@pytest.mark.parametrize(("n", "k"), [(1, 1), (2, 3), (7, 40), (128, 300)])
def test_gram_update_is_scipy_s_dsyrk_bit_for_bit(n, k):
    rng = np.random.default_rng(n)
    B, start = np.asfortranarray(rng.standard_normal((n, k))), np.asfortranarray(rng.standard_normal((n, n)))
    expected = blas.dsyrk(1.0, B, beta=1.0, c=start.copy(order="F"), trans=0, lower=1, overwrite_c=1)
    gram = start.copy(order="F")
    assert gram_update(gram, B) is gram and np.array_equal(gram, expected)
    strided = np.asfortranarray(rng.standard_normal((n, 2 * k)))[:, ::2]  # not contiguous: scipy's wrapper
    expected = blas.dsyrk(1.0, strided, beta=1.0, c=start.copy(order="F"), trans=0, lower=1)
    assert np.array_equal(gram_update(start.copy(order="F"), strided), expected)


def test_split_tridiagonal_sorted_ascending():
    """A block-diagonal matrix splits the tridiagonal form: dstebz orders by block, the result by value."""
    rng = np.random.default_rng(1)
    blocks = [rng.standard_normal((30, 30)) for _ in range(2)]
    A = scipy.linalg.block_diag(blocks[0] @ blocks[0].T, 4 * blocks[1] @ blocks[1].T)
    values, vectors = values_and_top(np.asfortranarray(A), 6)
    ref_values, ref_vectors = reference(A, 6)
    assert np.array_equal(values, ref_values)
    np.testing.assert_allclose(np.abs((vectors * ref_vectors).sum(0)), 1.0, atol=1e-10)


def test_out_of_range_entries_left_to_eigh():
    A = np.eye(4) * 1e150
    assert values_and_top(A, 2) is None
    assert values_and_top(np.zeros((3, 3)), 1) is None


def test_one_by_one_left_to_eigh():
    """A 1 x 1 Gram (of a matrix with one row or one column, e.g. Qwen2-MoE's shared_expert_gate, 1 x hidden) has
    no off-diagonal for dsterf: eigh takes it."""
    assert values_and_top(np.array([[4.0]]), 1) is None


@pytest.fixture
def fresh_routines():
    lapack._routine.cache_clear()
    yield
    lapack._routine.cache_clear()


def test_a_scipy_without_the_pointers_left_to_its_wrappers(monkeypatch, fresh_routines):
    import scipy.linalg.cython_blas as cython_blas
    import scipy.linalg.cython_lapack as cython_lapack

    A = symmetric(8, 2)
    assert values_and_top(A, 2) is not None
    monkeypatch.setattr(cython_lapack, "__pyx_capi__", {})
    monkeypatch.setattr(cython_blas, "__pyx_capi__", {})
    lapack._routine.cache_clear()
    assert lapack._routine("dormtr") is None and values_and_top(A, 2) is None and values_only(A) is None
    B = np.asfortranarray(np.random.default_rng(3).standard_normal((8, 5)))
    assert np.array_equal(gram_update(np.zeros((8, 8), order="F"), B), blas.dsyrk(1.0, B, lower=1))


def test_other_errors_raise(monkeypatch):
    def broken(name):
        raise ValueError("not a missing capsule")

    monkeypatch.setattr(lapack, "_routine", broken)
    with pytest.raises(ValueError, match="not a missing capsule"):
        values_and_top(np.diag([3.0, 2.0, 1.0]) + 0.1, 1)


def test_an_array_in_the_wrong_layout_is_refused():
    with pytest.raises(TypeError, match="Fortran-ordered"):
        lapack._call("dsterf", 3, np.zeros(3, np.float32), np.zeros(2), lapack._info())


def counted_during(call) -> tuple[int, float, float]:
    """How many times another Python thread counts while `call()` runs here, the longest it went without
    counting (from the call's start to its first count after the call) and the call's seconds."""
    state = {"count": 0, "stall": 0.0, "stop": False, "started": threading.Event()}

    def spin():
        clock = time.perf_counter
        last = clock()
        state["started"].set()
        while not state["stop"]:
            state["count"] += 1
            now = clock()
            state["stall"] = max(state["stall"], now - last)
            last = now

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    state["started"].wait()
    time.sleep(0.01)
    start, state["stall"], clock = state["count"], 0.0, time.perf_counter()
    call()
    seconds, counted = time.perf_counter() - clock, state["count"] - start
    time.sleep(0.01)  # the counter's first turn after the call closes its last gap
    state["stop"] = True
    thread.join()
    return counted, state["stall"], seconds


def lets_other_threads_run(call) -> bool:
    """Over three tries, a call of >= 50 ms during which the counting thread counted thousands of times and never
    waited as long as half of the call: a call holding the GIL stops it for all of the call but the interpreter's
    switch interval (5 ms) and the Python around the C call."""
    for _ in range(3):
        counted, stall, seconds = counted_during(call)
        assert seconds >= 0.05, "the call is too short to tell"
        if counted > 5_000 and stall < seconds / 2:
            return True
    return False


def test_the_calls_let_another_python_thread_run_where_scipy_s_wrappers_do_not():
    A = symmetric(1200, 0)
    B = np.asfortranarray(np.random.default_rng(0).standard_normal((1200, 4800)))
    with threadpoolctl.threadpool_limits(1, user_api="blas"):  # one core: long enough to tell anywhere
        assert lets_other_threads_run(lambda: values_and_top(A, 10))
        assert lets_other_threads_run(lambda: values_only(A.copy(order="F")))
        assert lets_other_threads_run(lambda: gram_update(np.zeros((1200, 1200), order="F"), B))
        assert not lets_other_threads_run(lambda: scipy.linalg.eigh(A, eigvals_only=True, lower=True, driver="ev"))


def test_numpy_integers_give_the_same_bits():
    """An integer from numpy (a shape's arithmetic, a config read by numpy) goes as a C int, as scipy's
    wrappers took it."""
    import torch

    from orthoscope.kernels import values_and_top_left

    A = symmetric(40, 4)
    values, vectors = values_and_top(A, 5)
    for top in (np.int64(5), np.int32(5), np.intc(5), np.uint8(5)):
        assert all(np.array_equal(a, b) for a, b in zip(values_and_top(A, top), (values, vectors)))
    W = torch.from_numpy(np.random.default_rng(5).standard_normal((50, 20)))
    s, U = values_and_top_left(W, 3)
    s64, U64 = values_and_top_left(W, np.int64(3))
    assert torch.equal(s, s64) and torch.equal(U, U64) and U64.shape == (50, 3)
    assert np.array_equal(values_only(A.copy(order="F")), values)
    B = np.asfortranarray(np.random.default_rng(6).standard_normal((8, 5)))
    assert np.array_equal(gram_update(np.zeros((8, 8), order="F"), B), blas.dsyrk(1.0, B, lower=1))
    d, e = np.linspace(1.0, 3.0, 4), np.full(3, 0.5)  # every scalar kind of numpy through _call
    found, info, w = lapack._info(), lapack._info(), np.zeros(4)
    lapack._call("dstebz", np.bytes_(b"A"), b"E", np.int16(4), np.float32(0.0), np.float64(0.0), np.int64(1),
                 np.uint64(4), np.float64(0.0), d, e, found, lapack._info(), w, np.zeros(4, np.intc),
                 np.zeros(4, np.intc), np.zeros(16), np.zeros(12, np.intc), info)
    expected = scipy_lapack.dstebz(d, e, 0, 0.0, 0.0, 1, 4, 0.0, b"E")
    assert info[0] == 0 and found[0] == 4 and np.array_equal(w, expected[1][:4])


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, np.int64(2**40), np.uint64(2**63)])
def test_an_integer_outside_a_c_int_raises(value):
    with pytest.raises(ValueError, match="outside a C int's range"):
        lapack._call("dsterf", value, np.zeros(3), np.zeros(2), lapack._info())


def test_the_signatures_parsed_to_the_kinds_passed():
    assert lapack._routine("dsterf").kinds == ("int", "double", "double", "int")
    # uplo, trans, n, k, alpha, a, lda, beta, c, ldc
    assert lapack._routine("dsyrk").kinds == ("char", "char", "int", "int", "double", "double", "int", "double",
                                              "double", "int")
    assert lapack._kinds("void (char *, double *, int *)") == ("char", "double", "int")
    for signature in ("void (char *, npy_int64 *)", "void (long *)", "void (int, int *)",
                      "void (__pyx_t_5scipy_6linalg_13cython_lapack_s *)", "int (int *)", "void ()", ""):
        assert lapack._kinds(signature) is None, signature


def test_an_unknown_argument_type_left_to_scipy_s_wrappers(monkeypatch, fresh_routines):
    """A scipy whose routines take another integer (an ILP64 build: `npy_int64 *`) gets no pointer: the public
    functions take scipy's wrappers and eigh, with no foreign call of their own."""
    import torch

    from orthoscope.kernels import values_and_top_left

    A, W = symmetric(30, 7), torch.from_numpy(np.random.default_rng(7).standard_normal((60, 30)))
    s, U = values_and_top_left(W, 4)
    real = lapack._signature
    monkeypatch.setattr(lapack, "_signature", lambda capsule: real(capsule).replace("int *", "npy_int64 *"))
    lapack._routine.cache_clear()

    def no_call(*args):
        raise AssertionError("a foreign call without a checked signature")

    monkeypatch.setattr(lapack, "_call", no_call)
    assert lapack._routine("dsyev") is None and lapack._routine("dsyrk") is None
    assert values_and_top(A, 3) is None and values_only(A) is None
    B = np.asfortranarray(np.random.default_rng(3).standard_normal((30, 9)))
    assert np.array_equal(gram_update(np.zeros((30, 30), order="F"), B), blas.dsyrk(1.0, B, lower=1))
    s_fallback, U_fallback = values_and_top_left(W, 4)  # eigh's dsyev (the same bits) and dsyevr
    assert torch.equal(s_fallback, s)
    torch.testing.assert_close((U * U_fallback).sum(0).abs(), torch.ones(4, dtype=torch.float64))


@pytest.mark.parametrize(("args", "message"), [
    ((3, np.zeros(3), np.zeros(2)), "takes 4 arguments, 3 given"),
    ((3, np.zeros(3), np.zeros(2), lapack._info(), 0), "takes 4 arguments, 5 given"),
    ((3.0, np.zeros(3), np.zeros(2), lapack._info()), "argument 0 must be a C int"),
    ((True, np.zeros(3), np.zeros(2), lapack._info()), "argument 0 must be a C int"),
    ((b"3", np.zeros(3), np.zeros(2), lapack._info()), "argument 0 must be a C int"),
    ((3, np.zeros(3, np.intc), np.zeros(2), lapack._info()), "argument 1 must be a Fortran-ordered array of C double"),
    ((3, np.zeros(3), 1, lapack._info()), "argument 2 must be a C double"),
    ((3, np.zeros(3), np.zeros(2), np.zeros(1)), "argument 3 must be a Fortran-ordered array of C int"),
    ((3, np.zeros(3), np.zeros(2), np.zeros(1, np.int64)), "argument 3 must be a Fortran-ordered array of C int"),
])
def test_a_wrong_argument_count_or_kind_raises_before_any_call(monkeypatch, args, message):
    calls = []
    kinds = lapack._routine("dsterf").kinds
    monkeypatch.setattr(lapack, "_routine", lambda name: lapack._Routine(lambda *p: calls.append(p), kinds))
    with pytest.raises(TypeError, match=message):
        lapack._call("dsterf", *args)
    assert calls == []
    lapack._call("dsterf", 3, np.zeros(3), np.zeros(2), lapack._info())  # the right ones reach the function
    assert len(calls) == 1 and len(calls[0]) == 4


def test_a_character_is_one_byte():
    with pytest.raises(TypeError, match="argument 0 must be a C char"):
        lapack._call("dsyev", b"NN", b"L", 1, np.zeros((1, 1), order="F"), 1, np.zeros(1), np.zeros(1), -1,
                     lapack._info())
    with pytest.raises(TypeError, match="argument 1 must be a C char"):
        lapack._call("dsyev", b"N", "L", 1, np.zeros((1, 1), order="F"), 1, np.zeros(1), np.zeros(1), -1,
                     lapack._info())


def test_the_shared_capsule_functions_left_as_they_were(monkeypatch, fresh_routines):
    """The capsules are read through private prototypes: ctypes.pythonapi's own keep the types others gave them."""
    import ctypes

    for function in (ctypes.pythonapi.PyCapsule_GetName, ctypes.pythonapi.PyCapsule_GetPointer):
        monkeypatch.setattr(function, "restype", ctypes.c_size_t)
        monkeypatch.setattr(function, "argtypes", [ctypes.c_void_p])
    lapack._routine.cache_clear()
    assert lapack._routine("dsyev").kinds[:3] == ("char", "char", "int")
    for function in (ctypes.pythonapi.PyCapsule_GetName, ctypes.pythonapi.PyCapsule_GetPointer):
        assert function.restype is ctypes.c_size_t and function.argtypes == [ctypes.c_void_p]
