"""Detections against a reference, the way ../shared/reference/README.md says to judge
them so that a test holds on any CPU (tests/unit/test_detect.c does the same in C):

- the same set: same class, box within 1e-3 of its largest coordinate, score within
  `score_tol`;
- in score order, except that rows whose reference scores are within `score_tol` of
  each other (a tie at float32 noise level: another CPU's BLAS sums in another order)
  may come in either order;
- a row tied with the reference's last row may be replaced by its tie (at the cut of
  the top 100, or of the top n compared).

Rows are dicts: the reference's "cls", "score", x1, y1, x2, y2 (detections.json; also
effdet-detect --dump's), ours either that or "class_id", "score", "box": {x1, y1, x2,
y2} (effdet-detect's and effdetd's JSON).
"""

# Against the fp32 reference: two fp32 engines differ by about the sum of their
# distances from float64 (PyTorch's: up to 4.9e-5 on d0's scores; ours: up to 7e-5 on
# an AMD Zen 5 at every kernel level), "a few 1e-4" in the README.
SCORE_TOL_FP32 = 2e-4
BOX_TOL = 1e-3
KEYS = ("x1", "y1", "x2", "y2")


def _matches(g, r, score_tol, box_tol):
    cls, box = (g["class_id"], g["box"]) if "box" in g else (g["cls"], g)
    if cls != r["cls"] or abs(g["score"] - r["score"]) > score_tol:
        return False
    scale = max(1.0, *(abs(r[k]) for k in KEYS))
    return all(abs(box[k] - r[k]) <= box_tol * scale for k in KEYS)


def mismatches(got, ref, score_tol=SCORE_TOL_FP32, box_tol=BOX_TOL):
    """Problems found comparing our rows `got` with reference rows `ref` (same length
    expected: pass the same top n of both). Empty when they agree."""
    problems = []
    n = len(ref)
    if len(got) != n:
        return [f"{len(got)} detections, reference has {n}"]
    if n == 0:
        return []
    last = ref[-1]["score"]
    used = [False] * n
    for i, g in enumerate(got):
        # our row i may be any unmatched reference row whose score ties the one at i
        cands = [j for j in range(n) if not used[j] and abs(ref[j]["score"] - ref[i]["score"]) <= score_tol
                 and _matches(g, ref[j], score_tol, box_tol)]
        if cands:
            used[min(cands, key=lambda j: abs(j - i))] = True
        elif abs(g["score"] - last) > score_tol:
            problems.append(f"row {i} {g} matches no reference row (row {i}: {ref[i]}) and is not tied with the last")
    for j in range(n):
        if not used[j] and abs(ref[j]["score"] - last) > score_tol:
            problems.append(f"reference row {j} {ref[j]} is missing and not tied with the last")
    return problems
