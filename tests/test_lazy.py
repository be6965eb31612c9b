"""ouroboros.lazy: a package registered with its __init__ deferred imports its submodules without
running it, runs it once at the first other name asked of it, and then holds every name it defines."""

import json
import subprocess
import sys
import textwrap

import pytest

from ouroboros import lazy


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package whose __init__ counts its runs (in ``runs``, a module of its own) and imports a
    submodule that its submodule ``light`` does not need."""
    root = tmp_path / "pkgroot"
    (root / "eager").mkdir(parents=True)
    (root / "runs.py").write_text("count = 0\n")
    (root / "eager" / "__init__.py").write_text(
        "import runs\nruns.count += 1\nfrom .heavy import HEAVY\nfrom .light import LIGHT\nNAME = 'from init'\n")
    (root / "eager" / "heavy.py").write_text("HEAVY = 'heavy'\n")
    (root / "eager" / "light.py").write_text("LIGHT = 'light'\n")
    (root / "plain.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.split(".")[0] in ("eager", "runs", "plain")]:
        del sys.modules[name]


def test_a_deferred_package_imports_its_submodules_without_its_init(package):
    import runs

    lazy.packages("eager")
    from eager.light import LIGHT

    assert LIGHT == "light" and runs.count == 0
    assert "eager.heavy" not in sys.modules
    eager = sys.modules["eager"]
    assert getattr(eager, "__wrapped__", None) is None and runs.count == 0  # a probe for a dunder: no init
    assert eager.NAME == "from init" and runs.count == 1  # the first other name runs the __init__ once
    assert eager.HEAVY == "heavy" and eager.light.LIGHT == "light" and runs.count == 1
    from eager import HEAVY, NAME

    assert (HEAVY, NAME) == ("heavy", "from init") and runs.count == 1
    with pytest.raises(AttributeError):
        eager.missing  # noqa: B018 - a name the __init__ does not define stays missing, without a second run
    assert runs.count == 1


def test_an_init_that_fails_raises_its_own_error_at_every_name_asked(package):
    import runs

    (package / "eager" / "__init__.py").write_text("import runs\nruns.count += 1\nraise ImportError('init failed')\n")
    lazy.packages("eager")
    eager = sys.modules["eager"]
    for _ in range(2):
        with pytest.raises(ImportError, match="init failed"):
            eager.NAME  # noqa: B018
    assert runs.count == 2


def test_what_is_no_package_or_already_imported_is_left_alone(package):
    import plain

    before = dict(sys.modules)
    lazy.packages("plain", "runs", "no_such_package", "no_such_parent.child", "plain.child")
    assert {k: v for k, v in sys.modules.items() if k in before} == before and set(sys.modules) == set(before)
    assert plain.VALUE == 1


@pytest.mark.cli  # a fresh interpreter importing torch and diffusers (6 CPU-s): not the fast tier's in-process kind
def test_the_unet_imports_without_diffusers_other_models_and_is_diffusers_class():
    """In a fresh process (this one may hold diffusers whole): after the lean import none of the
    models that diffusers' packages import eagerly is loaded, and the full import then gives the
    very class the lean one returned."""
    code = textwrap.dedent("""
        import json, sys
        from ouroboros import lazy
        unet = lazy.unet_class()
        lean = sorted(m for m in sys.modules if m.startswith(lazy.UNET_PACKAGES))
        from diffusers import UNet2DModel
        from diffusers.models.transformers import Transformer2DModel  # names of the packages' __init__
        from diffusers.models.unets import UNet2DConditionModel
        whole = sorted(m for m in sys.modules if m.startswith(lazy.UNET_PACKAGES))
        print(json.dumps([lean, len(whole), unet is UNet2DModel, UNet2DConditionModel.__name__]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lean, whole, same, conditional = json.loads(out.stdout.splitlines()[-1])
    # the UNet's own module and its blocks' two transformer modules, under the two packages
    assert set(lean) == {*lazy.UNET_PACKAGES, "diffusers.models.unets.unet_2d", "diffusers.models.unets.unet_2d_blocks",
                         "diffusers.models.transformers.dual_transformer_2d",
                         "diffusers.models.transformers.transformer_2d"}, lean
    assert whole > 3 * len(lean)  # what the packages' __init__ import once something asks for another model
    assert same and conditional == "UNet2DConditionModel"
