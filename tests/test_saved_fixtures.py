"""Models saved by an earlier kzoo still load, with the same outputs.

tests/fixtures holds a DSL model (Gabor initialiser, BN, dropout, in-graph caffe preprocessing)
and a transfer model (nested base with torch preprocessing, DSL head), saved by kzoo 0.1.0
before its modules became packages, with their predictions on four fixed images. Each is
reloaded in a fresh process that does nothing but ``import kzoo`` before Keras deserialises
it, as a user's script would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"

RELOAD = """
import json, sys
import numpy as np
import kzoo, keras
data = np.load(sys.argv[1])
model = keras.saving.load_model(sys.argv[2])
out = np.asarray(model.predict(data["images"], verbose=0))
print(json.dumps({"outputs": out.tolist(), "layers": [la.name for la in model.layers]}))
"""


@pytest.mark.slow
@pytest.mark.backend
@pytest.mark.parametrize("name", ["dsl", "transfer"])
def test_a_model_saved_by_the_earlier_layout_reloads_with_identical_outputs(name):
    expected = np.load(FIXTURES / "saved_model_outputs.npz")[name]
    result = subprocess.run(
        [sys.executable, "-c", RELOAD, str(FIXTURES / "saved_model_outputs.npz"),
         str(FIXTURES / f"{name}_model.keras")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(np.asarray(got["outputs"]), expected, rtol=1e-6, atol=1e-7)
    if name == "dsl":
        assert "preprocessing" in got["layers"] and "block1_conv1_bn" in got["layers"]
