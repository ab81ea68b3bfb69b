"""Audio: procedural machine sounds and offline speech (generate), the audio quality tier,
log-mel audio classification and CLAP-style audio-text tuning (train), ONNX int8 export."""
