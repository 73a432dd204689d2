"""A synthetic temporal world for proving TPO end to end on CPU: videos with a known timeline,
questions answered from it, a small pretrained video-LMM, a judge that knows the truth, and the experiment."""
