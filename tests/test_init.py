"""The package's lazy public names: what type checkers see of them is what ``__getattr__`` gives."""

import ast
import inspect

import lt_lightning


def _type_checking_imports() -> dict[str, str]:
    tree = ast.parse(inspect.getsource(lt_lightning))
    (block,) = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    return {alias.asname or alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom)
            for alias in node.names}


def test_every_lazy_name_is_imported_for_type_checkers_from_where_it_is_loaded():
    assert _type_checking_imports() == lt_lightning._EXPORTS
    assert all(getattr(lt_lightning, name) is not None for name in lt_lightning.__all__)
