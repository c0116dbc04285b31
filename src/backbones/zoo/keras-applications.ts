/**
 * The keras.applications backbones: graph, default input size, preprocessing mode, default and
 * named cuts, and the weight files Keras downloads for them, with the md5 Keras' own source
 * lists (keras/src/applications/*.py, Keras 3.15). MobileNet and MobileNetV2 have none there:
 * Keras downloads them unchecked, and so does bottleneck (saying so).
 */
import type { Preprocessing } from '../backbone.ts';
import type { Cut } from '../cut.ts';
import type { LayerGraph, Pair } from '../layer-graph.ts';
import { densenet121Graph } from './densenet.ts';
import { efficientnetB0Graph } from './efficientnet.ts';
import { inceptionV3Graph } from './inception-v3.ts';
import { mobilenetGraph, mobilenetV2Graph } from './mobilenet.ts';
import { resnetGraph } from './resnet.ts';
import { vgg19Graph } from './vgg16.ts';
import { xceptionGraph } from './xception.ts';

/** keras.applications.imagenet_utils.preprocess_input's modes, and EfficientNet's none. */
export type KerasPreprocessMode = 'caffe' | 'tf' | 'torch' | 'none';

export interface KerasWeightFile {
  readonly file: string;
  /** As Keras' source lists it; undefined where Keras checks nothing. */
  readonly md5?: string;
}

export interface KerasApplication {
  readonly graph: () => LayerGraph;
  readonly size: Pair;
  readonly mode: KerasPreprocessMode;
  readonly defaultCut: Cut;
  readonly namedCuts: readonly string[];
  /** Where Keras downloads the files from (the folder of both). */
  readonly url: string;
  readonly notop: KerasWeightFile;
  readonly full: KerasWeightFile;
  /** Weighted nodes that only the full (with-top) file holds. */
  readonly topNodes: readonly string[];
}

const KERAS_APPS = 'https://storage.googleapis.com/tensorflow/keras-applications';

const resnet = (name: 'resnet50' | 'resnet101' | 'resnet152', md5: readonly [string, string]): KerasApplication => ({
  graph: () => resnetGraph(name),
  size: [224, 224],
  mode: 'caffe',
  defaultCut: { layer: 'conv5_block3_out', pool: 'avg' },
  namedCuts: ['conv5_block3_out', 'conv5_block2_out', 'conv4_block6_out', 'conv3_block4_out', 'avg_pool'],
  url: `${KERAS_APPS}/resnet`,
  full: { file: `${name}_weights_tf_dim_ordering_tf_kernels.h5`, md5: md5[0] },
  notop: { file: `${name}_weights_tf_dim_ordering_tf_kernels_notop.h5`, md5: md5[1] },
  topNodes: ['predictions'],
});

export const KERAS_APPLICATIONS = {
  vgg19: {
    graph: vgg19Graph,
    size: [224, 224],
    mode: 'caffe',
    defaultCut: { layer: 'block5_pool' },
    namedCuts: ['block5_pool', 'fc1', 'fc2', 'block4_pool', 'block3_pool'],
    url: `${KERAS_APPS}/vgg19`,
    full: { file: 'vgg19_weights_tf_dim_ordering_tf_kernels.h5', md5: 'cbe5617147190e668d6c5d5026f83318' },
    notop: { file: 'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5', md5: '253f8cb515780f3b799900260a226db6' },
    topNodes: ['fc1', 'fc2', 'predictions'],
  },
  resnet50: resnet('resnet50', ['2cb95161c43110f7111970584f804107', '4d473c1dd8becc155b73f8504c6f6626']),
  resnet101: resnet('resnet101', ['f1aeb4b969a6efcfb50fad2f0c20cfc5', '88cf7a10940856eca736dc7b7e228a21']),
  resnet152: resnet('resnet152', ['100835be76be38e30d865e96f2aaae62', 'ee4c566cf9a93f14d82f913c2dc6dd0c']),
  inception_v3: {
    graph: inceptionV3Graph,
    size: [299, 299],
    mode: 'tf',
    defaultCut: { layer: 'mixed10', pool: 'avg' },
    namedCuts: ['mixed10', 'mixed9', 'mixed8', 'mixed7', 'mixed6', 'mixed5', 'avg_pool'],
    url: `${KERAS_APPS}/inception_v3`,
    full: { file: 'inception_v3_weights_tf_dim_ordering_tf_kernels.h5', md5: '9a0d58056eeedaa3f26cb7ebd46da564' },
    notop: { file: 'inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5', md5: 'bcbd6486424b2319ff4ef7d526e38f63' },
    topNodes: ['predictions'],
  },
  mobilenet: {
    graph: mobilenetGraph,
    size: [224, 224],
    mode: 'tf',
    defaultCut: { layer: 'conv_pw_13_relu', pool: 'avg' },
    namedCuts: ['conv_pw_13_relu', 'conv_pw_12_relu', 'conv_pw_11_relu', 'conv_pw_9_relu', 'global_average_pooling2d'],
    url: `${KERAS_APPS}/mobilenet`,
    full: { file: 'mobilenet_1_0_224_tf.h5' },
    notop: { file: 'mobilenet_1_0_224_tf_no_top.h5' },
    topNodes: ['conv_preds'],
  },
  mobilenet_v2: {
    graph: mobilenetV2Graph,
    size: [224, 224],
    mode: 'tf',
    defaultCut: { layer: 'out_relu', pool: 'avg' },
    namedCuts: ['out_relu', 'block_16_project_BN', 'block_15_add', 'block_12_add', 'global_average_pooling2d'],
    url: `${KERAS_APPS}/mobilenet_v2`,
    full: { file: 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5' },
    notop: { file: 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5' },
    topNodes: ['predictions'],
  },
  efficientnet_b0: {
    graph: () => efficientnetB0Graph(true),
    size: [224, 224],
    mode: 'none',
    defaultCut: { layer: 'top_activation', pool: 'avg' },
    namedCuts: ['top_activation', 'block7a_project_bn', 'block6d_add', 'block5c_add', 'avg_pool'],
    url: 'https://storage.googleapis.com/keras-applications',
    full: { file: 'efficientnetb0.h5', md5: '902e53a9f72be733fc0bcb005b3ebbac' },
    notop: { file: 'efficientnetb0_notop.h5', md5: '50bc09e76180e00e4465e1a485ddc09d' },
    topNodes: ['predictions'],
  },
  densenet121: {
    graph: densenet121Graph,
    size: [224, 224],
    mode: 'torch',
    defaultCut: { layer: 'relu', pool: 'avg' },
    namedCuts: ['relu', 'conv5_block16_concat', 'pool4_pool', 'pool3_pool', 'avg_pool'],
    url: `${KERAS_APPS}/densenet`,
    full: { file: 'densenet121_weights_tf_dim_ordering_tf_kernels.h5', md5: '9d60b8095a5708f2dcce2bca79d332c7' },
    notop: { file: 'densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5', md5: '30ee3e1110167f948a6b9946edeeb738' },
    topNodes: ['predictions'],
  },
  xception: {
    graph: xceptionGraph,
    size: [299, 299],
    mode: 'tf',
    defaultCut: { layer: 'block14_sepconv2_act', pool: 'avg' },
    namedCuts: ['block14_sepconv2_act', 'block14_sepconv1_act', 'add_11', 'add_7', 'avg_pool'],
    url: `${KERAS_APPS}/xception`,
    full: { file: 'xception_weights_tf_dim_ordering_tf_kernels.h5', md5: '0a58e3b7378bc2990ea3b43d5981f1f6' },
    notop: { file: 'xception_weights_tf_dim_ordering_tf_kernels_notop.h5', md5: 'b0042744bf5b25fce3cb969f33bebb97' },
    topNodes: ['predictions'],
  },
} as const satisfies Record<string, KerasApplication>;

export type KerasApplicationName = keyof typeof KERAS_APPLICATIONS;

export function isKerasApplication(name: string): name is KerasApplicationName {
  return Object.hasOwn(KERAS_APPLICATIONS, name);
}

/** keras.applications.imagenet_utils.preprocess_input as per-channel (v − mean) / std on 0..255 pixels. */
export function kerasPreprocessing(mode: KerasPreprocessMode, size: Pair): Preprocessing {
  switch (mode) {
    case 'caffe':
      return { size, channels: 'bgr', mean: [103.939, 116.779, 123.68], std: [1, 1, 1] };
    case 'tf':
      return { size, channels: 'rgb', mean: [127.5, 127.5, 127.5], std: [127.5, 127.5, 127.5] };
    case 'torch':
      return { size, channels: 'rgb', mean: [0.485 * 255, 0.456 * 255, 0.406 * 255], std: [0.229 * 255, 0.224 * 255, 0.225 * 255] };
    case 'none':
      // EfficientNet rescales and normalises inside the model.
      return { size, channels: 'rgb', mean: [0, 0, 0], std: [1, 1, 1] };
  }
}
