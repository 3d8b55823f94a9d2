"""tinygraph_rnn: recurrent cells built from tinygraph primitives, unrolled over time."""
