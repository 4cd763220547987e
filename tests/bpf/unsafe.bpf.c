// SPDX-License-Identifier: GPL-2.0
/* Must fail verification: reads packet bytes without a bounds check. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int reads_past_end(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;

	return data[100] ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
