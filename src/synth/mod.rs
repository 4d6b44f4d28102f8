//! Synthetic participants: real H.264 (openh264) of a moving test pattern and real
//! Opus (ropus) of a tone, for demos, tests and benchmarks.
