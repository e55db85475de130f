"""near_dedup's groups once the pairs are confirmed: tag mode's linked groups, the clusters listed on the card,
and the side file naming every member (rejected/near_dedup.clusters.json).

Rows are numbered 0..n-1 over whatever rows were compared (the LSH candidates); `ids` and `texts` are theirs.
"""

from __future__ import annotations

import json

import numpy as np

from tunesmith.curate.dedup import with_total
from tunesmith.curate.stage import StageContext

Assigned = dict[int, tuple[int, float, int]]  # member -> (kept row, Jaccard, partner it was matched with)


def linked_groups(rank: np.ndarray, pairs: np.ndarray, jaccard: np.ndarray) -> Assigned:
    """{member: (group's first row by rank, Jaccard of the member's strongest link, that partner)} for tag mode."""
    if len(pairs) == 0:
        return {}
    n = len(rank)
    from scipy.sparse import coo_matrix  # here, not at the top: scipy costs 0.4 s of every command's start
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    labels = connected_components(graph, directed=False)[1]
    by_rank = np.argsort(rank, kind="stable")
    first_of_label = {}
    for row in by_rank.tolist():
        first_of_label.setdefault(int(labels[row]), row)
    ends, partners = np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])
    strengths = np.concatenate([jaccard, jaccard])
    order = np.lexsort((rank[partners], -strengths, ends))  # per member: strongest link first
    firsts = order[np.concatenate([[True], ends[order][1:] != ends[order][:-1]])]
    out = {}
    for end, partner, j in zip(ends[firsts].tolist(), partners[firsts].tolist(), strengths[firsts].tolist()):
        keeper = first_of_label[int(labels[end])]
        if end != keeper:
            out[end] = (keeper, j, partner)
    return out


def clusters_of(assigned: Assigned) -> dict[int, list[int]]:
    """{kept row: its members}, both in row order."""
    clusters: dict[int, list[int]] = {}
    for member in sorted(assigned):
        clusters.setdefault(assigned[member][0], []).append(member)
    return dict(sorted(clusters.items()))


def describe(clusters: dict[int, list[int]], assigned: Assigned, ids: list[str], texts: list[str], action: str,
             max_clusters: int, max_members: int) -> list[dict]:
    """The first clusters for the card, each with its first members: a 100k-row cluster stays a few lines."""
    described = []
    for keeper, members in list(clusters.items())[:max_clusters]:
        described.append(with_total({
            "kept": ids[keeper],
            "kept_text": texts[keeper][:300],
            "members": [member(m, assigned, ids, action) for m in members[:max_members]],
            "member_texts": {ids[m]: texts[m][:300] for m in members[: min(5, max_members)]},
        }, "members", len(members)))
    return described


def member(row: int, assigned: Assigned, ids: list[str], action: str) -> dict:
    """A member with its Jaccard: with the kept row (drop), or with the partner that linked it (tag)."""
    _, j, partner = assigned[row]
    out = {"id": ids[row], "jaccard": round(j, 3)}
    if action == "tag":
        out["linked_to"] = ids[partner]
    return out


def kept_beside_dropped(pairs: np.ndarray, assigned: Assigned) -> int:
    """Kept rows similar to a row dropped as another row's duplicate: what chaining would have dropped too."""
    found = set()
    for a, b in pairs.tolist():
        kept, dropped = (a, b) if b in assigned else (b, a)
        if kept not in assigned and dropped in assigned and assigned[dropped][0] != kept:
            found.add(kept)
    return len(found)


def write_clusters(ctx: StageContext, clusters: dict[int, list[int]], assigned: Assigned, ids: list[str],
                   action: str) -> str | None:
    """Every cluster with every member, next to the rejected rows (the card lists only the first); its
    path relative to the version folder, or None when there is nothing to write or nowhere to write it.

    A .json document, not .jsonl: rejected/*.jsonl holds rejected rows only, one per line.
    """
    if not clusters or ctx.rejected_path is None:
        return None
    path = ctx.rejected_path.with_name(f"{ctx.stage_name}.clusters.json")
    listed = [{"kept": ids[keeper], "members": [member(m, assigned, ids, action) for m in members]}
              for keeper, members in clusters.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"stage": ctx.stage_name, "clusters": listed}, handle, ensure_ascii=False)
    return f"{path.parent.name}/{path.name}"
