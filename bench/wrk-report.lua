-- Prints wrk's totals as raw numbers for bench/run.sh (wrk's own summary rounds and scales).
done = function(summary, latency, requests)
  io.write(string.format("ODI_WRK bytes=%d duration_us=%d requests=%d errors=%d p50_us=%d p99_us=%d\n",
    summary.bytes, summary.duration, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
