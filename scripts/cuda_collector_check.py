"""CUDA check of DiagnosticsCollector (side stream) against item_readings, with inputs freed at once."""
import math, torch
from trainer_client.diagnostics import DiagnosticsCollector, item_readings
torch.manual_seed(0)
dev = torch.device("cuda")
col = DiagnosticsCollector()
expected = []
for step in range(200):
    B, D, K, H, W = 16, 64, 4, 12, 12
    d = torch.randn(B, D, D, device=dev) * (1 + step / 100)
    sl = torch.randn(B, K, device=dev)
    at = torch.rand(B, K, H, W, device=dev)
    lg = torch.randn(B, 10, H, W, device=dev) * 10
    if step % 7 == 0:
        lg[0, 0, 0, 0] = float("nan"); d[1, 2, 3] = float("inf")
    tg = torch.randint(0, 10, (B, H, W), device=dev)
    loss = lg.float().mean(); gn = d.norm()
    expected.append(item_readings(d, sl, at, lg, tg, loss, gn))
    col.collect(step, 0, lora_delta=d, stop_logits=sl, attention=at, logits=lg, targets=tg, loss=loss, grad_norm=gn)
    del d, sl, at, lg, tg, loss, gn
    torch.randn(4096, 4096, device=dev).sum()  # reuse freed memory on the main stream
got = col.drain()
assert len(got) == 200, len(got)
bad = 0
for e, g in zip(expected, got):
    for k, v in e.items():
        a, b = v, g[k]
        same = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)
        bad += not same
        if not same and bad < 5: print("mismatch", g["step"], k, a, b)
print("cuda collector check:", "OK" if bad == 0 else f"{bad} mismatches", "slots", col.slots_allocated)
