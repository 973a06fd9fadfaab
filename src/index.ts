// The core API, shared by the Node and browser entries: GPU runtime, tensors, autograd, the ops (each with its
// backward), the wav2vec2 model, checkpoint I/O over ByteReaders, audio preparation, metrics and the trainer.
// Nothing here imports a Node built-in (the Node edge is src/node/, the browser edge src/browser.ts); both entries
// hand a `GPU` object (navigator.gpu, or Dawn's) to createRuntime().
export { Runtime, createRuntime, summarizeAdapter, type AdapterSummary, type RuntimeOptions, type Bindable, type Bindings, type UniformValues } from './runtime/runtime.js';
export { MemoryTuneCache, LocalStorageTuneCache, tuneResults, tuneTable, setTuneOptions, runQueued, type TuneCache, type TuneEntry, type TuneResult, type StorageLike } from './runtime/tune.js';
export { Profile, rooflineTable, rooflineSummaryLine, type ProfileMethod, type ProfileRow, type DispatchRecord, type DispatchCost, type SectionRecord, type TraceEvent, type RooflinePeaks, type RooflineReport, type RooflineRow, type RooflineSummary, type RooflineClass } from './runtime/profile.js';
export { measureGemmGflops, measureCopyGBps } from './runtime/peaks.js';
export { KernelFamily, defineKernel, type ScalarType, type Defines, type EntryInfo, type BindingInfo, type UniformMember } from './runtime/kernel.js';
export { Tensor, numel, bytesPerElement, f32ToF16, f16ToF32, f32ToF16Array, f16ToF32Array, type DType } from './tensor.js';
export { autocast, autocastDtype, backward, checkpoint, isGradEnabled, keep, manualSeed, nextRandom, noGrad, record, tidy, withGrad, GraphNode, type BackwardFn } from './autograd.js';

// ops (each file's public functions; kernels are exported so callers can inspect or reuse them)
export { add, sub, mul, scale, accumulate, full, zerosLike, onesLike, cast } from './ops/elementwise.js';
export { matmul, linear, gemm, gemmStrategy, type Activation, type GemmStrategy, type GemmArgs } from './ops/matmul.js';
export { conv1d, type Conv1dOptions } from './ops/conv.js';
export { layerNorm, layerNormChannels, groupNormPerChannel, weightNorm } from './ops/norm.js';
export { gelu, tanh, dropout } from './ops/activation.js';
export {
  attention, attentionPacked, attentionUsesSubgroups, setAttentionSubgroups, relativePositionGate, relativePositionBucket, relativePositionBuckets, relativePositionBiasMatrix,
  type AttentionOptions, type RelativePositionBias,
} from './ops/attention.js';
export { transposeLast2, sliceLast, sliceAxis, concat, maskRows, replaceRows, maskColumns } from './ops/shape.js';
export { sum, mean, poolTime, weightedLayerSum } from './ops/reduce.js';
export { crossEntropy, mseLoss, softmax } from './ops/loss.js';
export { AdamW, clipGradNorm, gradNorm, type AdamWOptions, type AdamWState, type GradClip } from './ops/optim.js';

// models: a registry of families (model_type -> family folder), one classifier class over any family's encoder
export * from './model/classifier.js';
export { runHead, headLoss, headParameterShapes, type HeadInput, type HeadOptions } from './model/heads.js';
export { registeredFamilies, familyForModelType, familyOf, parseModelConfig, type AnyFamily } from './model/registry.js';
export type { ModelFamily, SpeechEncoder, EncoderInput, EncoderOutput, EncoderForwardOptions, AudioPreprocessor } from './model/family.js';
export { packedQkvAttention, type Projection } from './model/qkv.js';
export { initParameters, type InitRule, type InitOptions, type InitTensor } from './model/init.js';
export { parseWav2Vec2Config, WAV2VEC2_DEFAULTS, type Wav2Vec2Config } from './model/wav2vec2/config.js';
export { convOutputLength, receptiveField, frameMaskFromSampleLengths, frameMaskFromFrameLengths, Wav2Vec2Encoder } from './model/wav2vec2/encoder.js';
export { WaveformPreprocessor } from './model/wav2vec2/preprocess.js';
export { parseHubertConfig, type HubertConfig } from './model/hubert/index.js';
export { parseData2VecAudioConfig, type Data2VecAudioConfig } from './model/data2vec_audio/index.js';
export { parseWavLMConfig, WavLMEncoder, WAVLM_DEFAULTS, type WavLMConfig } from './model/wavlm/index.js';

// checkpoints and configs (ByteReader: bytesReader over memory, blobReader over a Blob / File)
export * from './io/config.js';
export { readSafetensors, writeSafetensors, safetensorsBytes, safetensorsLayout, type TensorToSave, type SafetensorsLayout } from './io/safetensors.js';
export { readPytorch } from './io/pytorch.js';
export { bytesReader, blobReader, openSharded, parseShardIndex, type ByteReader, type TensorEntry, type TensorSource, type CheckpointDType } from './io/source.js';
export { openModelFiles, readTensorFile, pickWeightsFile, WEIGHT_FILES, type ModelFiles } from './io/modelfiles.js';
export { canonicalParameterName, mapCheckpointKeys, loadIntoTensors, commonSkipReason, extraLayerSkip, type HeadKind, type KeyRules, type LoadReport } from './io/statedict.js';

// audio (decoding, resampling, normalization: pure TypeScript / WebAssembly)
export * from './audio/index.js';

// evaluation and training
export { computeMetrics, argmaxRows, macroF1, formatMetrics, type Metrics, type ClassMetrics } from './metrics.js';
export { Trainer, DEFAULT_TRAIN_CONFIG, DEFAULT_LOSS_SCALE, type TrainConfig, type LossScaleState } from './train/trainer.js';
export { linearWarmupDecay } from './train/schedule.js';

// one call: model -> predictions (transformers.js's audio-classification pipeline shape)
export { audioClassifier, windowSpans, type AudioClassifier, type AudioClassifierOptions, type AudioInput, type ClassifyOptions, type WindowOptions, type LabelScore, type ModelSource, type Prediction, type SampledAudio, type TimelineEntry } from './pipeline.js';
export { timelineSvg, timelineHtml, type TimelinePoint } from './report/timeline.js';
