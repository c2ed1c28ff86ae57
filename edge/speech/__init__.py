"""Speech in and out: WAV reading and log-mel features, voice activity, the microphone, Whisper
transcription, and Piper confirmations."""
