"""Every built-in model passes the conformance suite that plugins run too."""

from seqbench import registry
from seqbench.testing import parametrize_with_checks


def builtin_models():
    eps = registry.models._entry_points()
    return [registry.models.get(name)() for name in sorted(eps)
            if eps[name].value.startswith("seqbench.")]


@parametrize_with_checks(builtin_models())
def test_builtin_model_conformance(model, check):
    check(model)
