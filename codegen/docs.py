"""Documentation generated from the rule table, so the README's rules cannot drift from the code."""

from __future__ import annotations

from .ops import OPS


def rules_table() -> str:
    """The Markdown table of derivative rules (README section "Derivative rules")."""
    rows = ["| op | forward | derivative rule (reverse mode) |", "|---|---|---|"]
    for op in OPS.values():
        if not op.grads or op.kind == "layout":
            continue
        grads = "<br>".join(g.replace("|", "\\|") for g in op.grads)
        name = op.name + (" (internal)" if op.name == "outer" else "")
        rows.append(f"| `{name}` | `{op.math.replace('|', '&#124;')}` | {grads} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(rules_table(), end="")
