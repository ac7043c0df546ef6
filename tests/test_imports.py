import subprocess
import sys


def test_models_imports_none_of_the_upper_layers():
    code = (
        "import sys, models, models.generator, models.registry, models.checkpoint, models.hf_musicgen, models.debug;"
        "bad = [m for m in ('gradio', 'musicrl', 'app', 'evaluation') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"models pulled in: {out.stdout.strip()}"


def test_evaluation_does_not_import_musicrl_or_app():
    code = (
        "import sys, pkgutil, importlib, evaluation;"
        "[importlib.import_module('evaluation.' + m.name) for m in pkgutil.iter_modules(evaluation.__path__)];"
        "print(','.join(m for m in ('gradio', 'musicrl', 'app') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
