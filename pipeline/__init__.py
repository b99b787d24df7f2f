"""prune-pipeline: train, prune, strip, convert to TFLite and evaluate LSTM models.

tfmot only works with tf_keras models, and importing it flips TF_USE_LEGACY_KERAS on its
own; setting it here, before anything imports TensorFlow, makes `tf.keras` mean the same
thing for the whole process.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
