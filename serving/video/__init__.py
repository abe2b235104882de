"""Recorded streams: decoding within limits, shots, segment verdicts, background jobs."""
