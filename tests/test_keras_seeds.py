"""The three Keras programs of the seed notes, with only their imports changed, run on grukit.keras.

Each program below is the seed's code verbatim except for the lines marked "import changed".
The names the seeds leave undefined (timesteps, features, X_train, y_train) are filled in
by the test with real data (Seattle weather, for the regressor) or small random data.
"""

import numpy as np
import pytest

pytest.importorskip("grukit.keras")

# the seeds pass input_shape= and input_length=, as the notes print them; Keras 3 warns that both are
# deprecated. The programs are kept verbatim, so those two warnings are expected here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Do not pass an `input_shape`/`input_dim` argument:UserWarning"),
    pytest.mark.filterwarnings("ignore:Argument `input_length` is deprecated:UserWarning"),
]


# seed 000: "Python Example (Keras)"
SEED_000 = """
from grukit.keras import Sequential                 # import changed: tensorflow.keras.models
from grukit.keras import GRU, Dense                 # import changed: tensorflow.keras.layers

model = Sequential()
model.add(GRU(128, input_shape=(10, 50)))  # 10 time steps, 50 features
model.add(Dense(1, activation='sigmoid'))

model.compile(optimizer='adam', loss='binary_crossentropy')
model.summary()
"""

# seed 001: "Implementation in TensorFlow/Keras" (`import tensorflow as tf` was unused: dropped)
SEED_001 = """
from grukit.keras import Sequential                 # import changed: tensorflow.keras.models
from grukit.keras import GRU, Dense                 # import changed: tensorflow.keras.layers

# Define the model
model = Sequential()
model.add(GRU(50, input_shape=(timesteps, features)))  # 50 GRU units
model.add(Dense(1))  # Output layer

# Compile the model
model.compile(optimizer='adam', loss='mean_squared_error')

# Fit the model
model.fit(X_train, y_train, epochs=50, batch_size=32)
"""

# seed 002: "Keras GRU Example" (it used Embedding without importing it: the import fixes that)
SEED_002 = """
from grukit.keras import Sequential                      # import changed: tensorflow.keras.models
from grukit.keras import GRU, Dense, Input, Embedding    # import changed: tensorflow.keras.layers
import numpy as np

# Step 1: Create model
model = Sequential()

model.add(Embedding(input_dim=10000, output_dim=64, input_length=100))

# Step 2: Add GRU layer
model.add(GRU(64))

# Step 3: Output layer
model.add(Dense(1, activation='sigmoid'))
"""


def _gru_params(inputs, units, reset_after=True):
    return 3 * (inputs * units + units * units + (2 if reset_after else 1) * units)


@pytest.mark.slow
def test_seed_000_builds_summarises_and_trains(capsys):
    scope = {}
    exec(SEED_000, scope)
    model = scope["model"]
    text = capsys.readouterr().out
    expected = _gru_params(50, 128) + 128 + 1  # 69,249
    assert f"Total params: {expected:,}" in text
    # train briefly on a learnable rule: is the mean of the first feature positive?
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 10, 50)).astype("float32")
    y = (x[:, :, 0].mean(1) > 0).astype("float32")
    history = model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.slow
def test_seed_001_fits_seattle_weather(capsys):
    from grukit.apps.datasets import seattle_weather

    data = seattle_weather(window=14)
    X_train = data.x_train[:320]
    y_train = (data.y_train[:320] - data.target_mean) / data.target_std
    scope = {"timesteps": X_train.shape[1], "features": X_train.shape[2], "X_train": X_train, "y_train": y_train}
    exec(SEED_001, scope)
    model = scope["model"]
    assert model.count_params() == _gru_params(4, 50) + 50 + 1
    losses = model.history.history["loss"]
    assert len(losses) == 50 and losses[-1] < 0.5 * losses[0], losses
    assert "Epoch 50/50" in capsys.readouterr().out


@pytest.mark.slow
def test_seed_002_builds_summarises_and_trains(capsys):
    scope = {}
    exec(SEED_002, scope)
    model = scope["model"]
    model.build((None, 100))  # Keras 3 ignores input_length: the shape comes from the data or build()
    model.summary()
    expected = 10000 * 64 + _gru_params(64, 64) + 64 + 1  # 665,025
    assert f"Total params: {expected:,}" in capsys.readouterr().out
    # the seed's use: a review classifier. Learnable rule: does word 7 occur in the review?
    rng = np.random.default_rng(1)
    x = rng.integers(10, 10000, size=(384, 100))
    y = (rng.random(384) < 0.5).astype("float32")
    x[y == 1, rng.integers(0, 100, size=int(y.sum()))] = 7
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=6, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses
