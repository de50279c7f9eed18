"""codegen/expr.py: trees render with the fewest parentheses that keep Python's meaning."""

from __future__ import annotations

import ast
import itertools

import pytest

from codegen import expr as E


def test_a_product_of_dims_after_a_division_keeps_its_parentheses():
    """The issue-11 mean: ``loss / N * K`` was ``loss / (N * K)`` pasted without parentheses."""
    n = E.product(["N", "K"])
    assert E.assign("loss", E.div("loss", n)) == "loss = loss / (N * K)"
    assert E.assign("loss", n, "/") == "loss /= N * K"
    assert E.product([]).render() == "1"


_AST_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
            ast.Pow: "**"}


def _shape(node: ast.AST):
    """A parsed expression as nested tuples, to compare with the tree it was rendered from."""
    if isinstance(node, ast.Expression):
        return _shape(node.body)
    if isinstance(node, ast.BinOp):
        return (_AST_OPS[type(node.op)], _shape(node.left), _shape(node.right))
    if isinstance(node, ast.UnaryOp):
        return ("neg", _shape(node.operand))
    if isinstance(node, ast.Name):
        return node.id
    return repr(node.value)  # type: ignore[attr-defined]


def _tree_shape(e: E.Expr):
    if isinstance(e, E.Leaf):
        return e.text
    if isinstance(e, E.Unary):
        return ("neg", _tree_shape(e.operand))
    assert isinstance(e, E.BinOp)
    return (e.op, _tree_shape(e.left), _tree_shape(e.right))


@pytest.mark.parametrize("op1, op2", list(itertools.product(
    ["+", "-", "*", "/", "//", "**"], repeat=2)))
def test_every_pair_of_operators_renders_to_the_tree_it_was_built_from(op1, op2):
    """Python parses the rendering back to the same tree, and dropping any pair of its
    parentheses gives another tree (the parentheses are all needed)."""
    minus_a = E.Unary("-", E.as_expr("a"))
    for tree in (E.binop(op1, E.binop(op2, "a", "b"), "c"),
                 E.binop(op1, "a", E.binop(op2, "b", "c")),
                 E.binop(op1, minus_a, E.binop(op2, "c", "b")),
                 E.binop(op1, E.binop(op2, "d", "c"), E.Unary("-", E.as_expr("b"))),
                 E.Unary("-", E.binop(op1, E.binop(op2, "a", "b"), minus_a))):
        source = tree.render()
        assert _shape(ast.parse(source, mode="eval")) == _tree_shape(tree), source
        for i, ch in enumerate(source):
            if ch != "(":
                continue
            depth = 0
            for j in range(i, len(source)):
                depth += {"(": 1, ")": -1}.get(source[j], 0)
                if depth == 0:
                    break
            dropped = source[:i] + source[i + 1:j] + source[j + 1:]
            try:
                same = _shape(ast.parse(dropped, mode="eval")) == _tree_shape(tree)
            except SyntaxError:
                same = False
            assert not same, f"{source}: the parentheses at {i} are not needed"


def test_powers_unary_minus_and_conditionals():
    x = E.as_expr("x")
    assert E.binop("**", E.Unary("-", x), 2).render() == "(-x) ** 2"
    assert E.Unary("-", E.binop("**", x, 2)).render() == "-x**2"
    assert E.binop("**", x, -1).render() == "x**-1"
    assert E.binop("**", E.add(x, 1), 2).render() == "(x + 1) ** 2"
    assert E.binop("**", 2, E.binop("**", 3, 2)).render() == "2 ** 3**2"
    assert E.binop("**", E.binop("**", 2, 3), 2).render() == "(2**3) ** 2"
    cond = E.Cond(x, E.binop(">", x, 0), E.as_expr("np.inf"))
    assert E.mul(cond, 2).render() == "(x if x > 0 else np.inf) * 2"
    assert E.call("f", cond, x).render() == "f(x if x > 0 else np.inf, x)"
    assert E.binop(">", E.binop("<", x, 1), 0).render() == "(x < 1) > 0"
    assert E.any_of([E.binop("!=", "a", "b"), E.binop("!=", "c", 1)]).render() == "a != b or c != 1"


def test_only_names_and_numbers_enter_a_tree_without_their_precedence():
    assert E.as_expr("X.shape").render() == "X.shape"
    assert E.as_expr(-2.5).render() == "-2.5" and E.as_expr(-2.5).prec < E.ATOM
    for fragment in ("N * K", "a + b", "f(x)", "x[0]", "1; import os"):
        with pytest.raises(ValueError):
            E.as_expr(fragment)


def test_substitute_replaces_leaves_everywhere():
    tree = E.call("_sin", E.index("X", "i", "j"), "short")
    assert E.substitute(tree, {"short": E.as_expr(True)}).render() == "_sin(X[i, j], True)"
