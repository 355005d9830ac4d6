"""Stage 4: similarity of aligned pHashes, and which copy a duplicate group keeps."""

from kinema.data.curate.dedup import find_duplicates, similarity

A = ["ffffffffffffffff", "0000000000000000"]
A_NEAR = ["fffffffffffffff0", "0000000000000000"]  # 4 of 128 bits differ
B = ["0f0f0f0f0f0f0f0f", "f0f0f0f0f0f0f0f0"]


def test_similarity():
    assert similarity(A, A) == 1.0
    assert similarity(A, A_NEAR) == 1 - 4 / 128
    assert similarity(A, B) == 0.5
    assert similarity(A, []) == 0.0 and similarity(A, A[:1]) == 0.0


def test_groups_keep_the_best_copy():
    scores = {"a": (10.0,), "a_near": (20.0,), "b": (5.0,)}
    duplicates = find_duplicates({"a": A, "a_near": A_NEAR, "b": B}, lambda i: scores[i], 0.9)
    assert duplicates == {"a": ("a_near", 1 - 4 / 128)}


def test_ties_keep_the_first_id():
    duplicates = find_duplicates({"x2": A, "x1": A}, lambda i: (1.0,), 0.9)
    assert duplicates == {"x2": ("x1", 1.0)}
