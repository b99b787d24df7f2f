"""Keras model builders (tf_keras only): they know nothing of pruning or data.

Like `pipeline`, this package pins TF_USE_LEGACY_KERAS before TensorFlow loads, so a
builder imported on its own still makes tf_keras models that tfmot accepts.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
