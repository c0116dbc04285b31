"""Reference outputs of genuine keras.applications backbones, for test/keras-backbones.test.ts.

Two steps (see README.md in this folder for the exact commands):

  structure   builds each backbone with weights=None and writes <name>.layers.json: Keras' own
              model.to_json() layer list (configs without initializers), each layer's output
              shape, and its weights (names, shapes) in Keras' order.
  outputs     loads seeded weights that bottleneck's own Keras-h5 writer wrote
              (test/reference/write-seeded-weights.ts), runs two real photos through Keras'
              preprocess_input and the model, and writes <name>.outputs.bin (float32, the
              default cut's codes for both images) and <name>.outputs.json. The photos' pixels,
              resized with Pillow, are saved once per input size as images-<size>.u8 so the
              tests feed exactly these pixels to bottleneck's own preprocessing.
"""
import argparse
import json
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
from keras import applications as apps  # noqa: E402
from PIL import Image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "keras")

# name: (constructor, preprocessing module, default cut layer, pool)
BACKBONES = {
    "vgg19": (apps.VGG19, apps.vgg19, "block5_pool", None),
    "resnet50": (apps.ResNet50, apps.resnet, "conv5_block3_out", "avg"),
    "resnet101": (apps.ResNet101, apps.resnet, "conv5_block3_out", "avg"),
    "resnet152": (apps.ResNet152, apps.resnet, "conv5_block3_out", "avg"),
    "inception_v3": (apps.InceptionV3, apps.inception_v3, "mixed10", "avg"),
    "mobilenet": (apps.MobileNet, apps.mobilenet, "conv_pw_13_relu", "avg"),
    "mobilenet_v2": (apps.MobileNetV2, apps.mobilenet_v2, "out_relu", "avg"),
    "efficientnet_b0": (apps.EfficientNetB0, apps.efficientnet, "top_activation", "avg"),
    "densenet121": (apps.DenseNet121, apps.densenet, "relu", "avg"),
    "xception": (apps.Xception, apps.xception, "block14_sepconv2_act", "avg"),
}

DROP = ("initializer", "regularizer", "constraint")


def build(name):
    keras.backend.clear_session()
    return BACKBONES[name][0](weights=None)


def trimmed_config(config):
    return {k: v for k, v in config.items() if not any(k.endswith(d) for d in DROP) and k not in ("dtype", "trainable")}


def structure(name):
    model = build(name)
    topology = json.loads(model.to_json())
    layers = topology["config"]["layers"]
    for entry in layers:
        entry["config"] = trimmed_config(entry["config"])
        entry.pop("build_config", None)
        entry.pop("module", None)
        entry.pop("registered_name", None)
        layer = model.get_layer(entry["name"])
        entry["output_shape"] = list(layer.output.shape)
        entry["weights"] = [[w.path, list(w.shape)] for w in layer.weights]
    for entry in layers:  # the tensors' configs repeat shapes and dtypes; keep only their history
        for node in entry.get("inbound_nodes", []):
            strip_tensors(node)
    out = {
        "keras_version": keras.__version__,
        "class_name": topology["class_name"],
        "config": {"name": topology["config"]["name"], "layers": layers,
                   "input_layers": topology["config"]["input_layers"],
                   "output_layers": topology["config"]["output_layers"]},
    }
    with open(os.path.join(OUT, f"{name}.layers.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"{name}: {len(layers)} layers, {len(model.weights)} weights, input {model.input_shape}")


def strip_tensors(value):
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            value["config"] = {"keras_history": value["config"]["keras_history"]}
        else:
            for v in value.values():
                strip_tensors(v)
    elif isinstance(value, list):
        for v in value:
            strip_tensors(v)


def photos(size):
    """Two real photos, resized to size×size with Pillow (bilinear), as uint8 RGB."""
    files = [os.path.join(HERE, "..", "..", "..", "shared", "datasets", "flowers", f)
             for f in ("daisy/100080576_f52e8ee070_n.jpg", "roses/10090824183_d02c613f10_m.jpg")]
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR)) for f in files])
    path = os.path.join(OUT, f"images-{size}.u8")
    pixels.astype(np.uint8).tofile(path)
    return pixels


def outputs(name, weights_dir):
    model = build(name)
    model.load_weights(os.path.join(weights_dir, f"{name}.h5"))
    _, prep, cut, pool = BACKBONES[name]
    size = model.input_shape[1]
    x = prep.preprocess_input(photos(size).astype(np.float32))
    layer = model.get_layer(cut)
    sub = keras.Model(model.input, layer.output)
    codes = np.asarray(sub(x, training=False))
    if pool == "avg":
        codes = codes.mean(axis=(1, 2))
    probs = np.asarray(model(x, training=False))
    codes.astype("<f4").tofile(os.path.join(OUT, f"{name}.outputs.bin"))
    probs.astype("<f4").tofile(os.path.join(OUT, f"{name}.predictions.bin"))
    flat = codes.reshape(len(codes), -1)
    meta = {"backbone": name, "input_size": size, "layer": cut, "pool": pool, "shape": list(codes.shape[1:]),
            "images": 2, "keras_version": keras.__version__, "top1": probs.argmax(axis=1).tolist(),
            "code_std": float(flat.std()), "distinct_fraction": float(len(np.unique(flat)) / flat.size)}
    with open(os.path.join(OUT, f"{name}.outputs.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{name}: codes {codes.shape}, std {meta['code_std']:.4g}, distinct {meta['distinct_fraction']:.3f}, top1 {meta['top1']}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["structure", "outputs"])
    parser.add_argument("--weights-dir")
    parser.add_argument("names", nargs="*", default=list(BACKBONES))
    args = parser.parse_intermixed_args()
    os.makedirs(OUT, exist_ok=True)
    for name in args.names:
        if args.step == "structure":
            structure(name)
        else:
            outputs(name, args.weights_dir)


if __name__ == "__main__":
    sys.exit(main())
