"""float16 copies of ONNX files, as users get them (Hugging Face's model_fp16.onnx, say), for bench/fp16-cpu.

  /work/venv-torch/bin/python bench/reference/to_fp16.py fixtures/generated/onnx-backbones/resnet50.onnx [...]

Writes NAME.fp16.onnx beside each file: onnxruntime's own convert_float_to_float16
(onnxruntime.transformers.float16), every weight and activation float16, input and output too
(keep_io_types=False), as a float16 export is. (onnxconverter-common 1.16's converter of the same
name leaves the ViT's Cast nodes casting to float32, a model onnxruntime refuses.)
"""
import os
import sys

import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit('usage: to_fp16.py MODEL.onnx [...]')
    for path in sys.argv[1:]:
        if not path.endswith('.onnx') or not os.path.isfile(path):
            sys.exit(f'{path}: not an .onnx file')
        model = convert_float_to_float16(onnx.load(path), keep_io_types=False)
        out = path[: -len('.onnx')] + '.fp16.onnx'
        onnx.save(model, out)
        print(out)


if __name__ == '__main__':
    main()
