"""The server fuzz table: one row per image and content type."""

from __future__ import annotations

COLUMNS = [("image", "image", 9), ("content_type", "content type", 32), ("bodies", "bodies", 7), ("2xx", "2xx", 6),
           ("4xx", "4xx", 6), ("5xx", "5xx", 5), ("dropped", "dropped", 7), ("worker_deaths", "deaths", 6),
           ("max_ping_s", "max /ping s", 11), ("max_request_s", "max request s", 13), ("seconds", "run s", 7)]


def table(rows: list[dict]) -> str:
    lines = [" ".join(title.rjust(width) if i > 1 else title.ljust(width)
                      for i, (_, title, width) in enumerate(COLUMNS))]
    for row in rows:
        cells = []
        for i, (key, _, width) in enumerate(COLUMNS):
            value = row.get(key, "")
            text = f"{value:.3f}" if isinstance(value, float) else str(value)
            cells.append(text.rjust(width) if i > 1 else text.ljust(width))
        lines.append(" ".join(cells))
    for row in rows:
        for failure in row.get("failures", []):
            lines.append(f"  {row['image']} {row['content_type']}: {failure['status']} {failure['exception']} at "
                         f"{failure['where']} ({failure['count']} of the smallest failing bodies replayed); "
                         f"minimal body {failure['body']}")
    return "\n".join(lines)
