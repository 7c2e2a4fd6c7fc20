
// Snippet (appended to gelu_forward.wgsl and gelu_backward.wgsl by the host): GELU's gate
// s = sigmoid(A · v + B · v³), A = 2·√(2/π), B = 0.044715 · A, so that gelu(v) = v · s is
// 0.5 · v · (1 + tanh(√(2/π) · (v + 0.044715 · v³))), as 0.5 · (1 + tanh(u)) = sigmoid(2u).
// exp overflows to +inf far left, where the gate correctly becomes 0.

const GELU_A: f32 = 1.5957691216057308;
const GELU_B: f32 = 0.07135481627260025;

fn gelu_gate(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-(GELU_A * v + GELU_B * v * v * v)));
}
