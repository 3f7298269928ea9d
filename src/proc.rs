// SPDX-License-Identifier: GPL-2.0

//! /proc/net/kcm and /proc/net/kcm_stats, in the layout of net/kcm. Each namespace shows only
//! its own multiplexors, and no kernel address is printed.

use crate::ffi::stream::Transport;
use crate::net_state::NetState;
use crate::stats::{MuxStats, PsockStats};
use kernel::prelude::*;
use kernel::seq_file::SeqFile;
use kernel::seq_print;

/// /proc/net/kcm: every multiplexor with its KCM sockets and psocks.
pub(crate) fn show_kcm(net: &NetState, m: &SeqFile) -> Result {
    let muxes = net.muxes()?;
    seq_print!(m, "*** KCM statistics ({} MUX) ****\n", muxes.len());
    seq_print!(
        m,
        "{:<14} {:<10} {:<16} {:<10} {:<16} {:<8} {:<8} {:<8} {:<8} {}\n",
        "Object",
        "RX-Msgs",
        "RX-Bytes",
        "TX-Msgs",
        "TX-Bytes",
        "Recv-Q",
        "Rmem",
        "Send-Q",
        "Smem",
        "Status"
    );
    for mux in muxes.iter() {
        let report = mux.report()?;
        let s = mux.stats();
        seq_print!(
            m,
            "{:<6}{:<8} {:<10} {:<16} {:<10} {:<16} {:<8} {:<8} {:<8} {:<8} ",
            "mux",
            "",
            s.rx.msgs.get(),
            s.rx.bytes.get(),
            s.tx.msgs.get(),
            s.tx.bytes.get(),
            "-",
            "-",
            "-",
            "-"
        );
        seq_print!(
            m,
            "KCMs: {}, Psocks {}\n",
            report.members.len(),
            report.psocks.len()
        );
        for k in report.members.iter() {
            seq_print!(
                m,
                "   kcm-{:<7} {:<10} {:<16} {:<10} {:<16} {:<8} {:<8} {:<8} {:<8} ",
                k.index,
                k.stats.rx.msgs.get(),
                k.stats.rx.bytes.get(),
                k.stats.tx.msgs.get(),
                k.stats.tx.bytes.get(),
                k.queue.0,
                k.queue.1,
                0,
                "-"
            );
            if k.rx_wait {
                seq_print!(m, "RxWait ");
            }
            seq_print!(m, "\n");
        }
        for p in report.psocks.iter() {
            let s = p.stats();
            let [rq, rmem, wq, wmem] = p.stream().queue_state();
            seq_print!(
                m,
                "   psock-{:<5} {:<10} {:<16} {:<10} {:<16} {:<8} {:<8} {:<8} {:<8} ",
                p.index(),
                s.rx.msgs.get(),
                s.rx.bytes.get(),
                s.tx.msgs.get(),
                s.tx.bytes.get(),
                rq,
                rmem,
                wq,
                wmem
            );
            let status = p.status();
            if status.tx_broken {
                seq_print!(m, "TxStop ");
            }
            if status.rx_stopped {
                seq_print!(m, "RxStop ");
            }
            if status.reserved {
                seq_print!(m, "Rsvd ");
            }
            if status.ready {
                seq_print!(m, "RdyRx ");
            }
            // Not in net/kcm, which takes plain TCP only: a TCP psock's line is as there.
            match p.stream().transport() {
                Transport::Tcp => {}
                Transport::Mptcp => seq_print!(m, "MPTCP "),
                Transport::Tls => seq_print!(m, "TLS "),
            }
            seq_print!(m, "\n");
        }
    }
    Ok(())
}

/// /proc/net/kcm_stats: sums over the namespace, including ended multiplexors and psocks.
pub(crate) fn show_stats(net: &NetState, m: &SeqFile) -> Result {
    let mux_total = MuxStats::default();
    let psock_total = PsockStats::default();
    net.departed_muxes().add_to(&mux_total);
    net.departed_psocks().add_to(&psock_total);
    for mux in net.muxes()?.iter() {
        mux.stats().add_to(&mux_total);
        mux.departed_psocks().add_to(&psock_total);
        for p in mux.report()?.psocks.iter() {
            p.stats().add_to(&psock_total);
        }
    }
    seq_print!(
        m,
        "{:<8} {:<10} {:<16} {:<10} {:<16} {:<10} {:<10} {:<10} {:<10} {:<10}\n",
        "MUX",
        "RX-Msgs",
        "RX-Bytes",
        "TX-Msgs",
        "TX-Bytes",
        "TX-Retries",
        "Attach",
        "Unattach",
        "UnattchRsvd",
        "RX-RdyDrops"
    );
    let t = &mux_total;
    seq_print!(
        m,
        "{:<8} {:<10} {:<16} {:<10} {:<16} {:<10} {:<10} {:<10} {:<10} {:<10}\n",
        "",
        t.rx.msgs.get(),
        t.rx.bytes.get(),
        t.tx.msgs.get(),
        t.tx.bytes.get(),
        t.tx_retries.get(),
        t.psock_attach.get(),
        t.psock_unattach.get(),
        t.psock_unattach_rsvd.get(),
        t.rx_ready_drops.get()
    );
    seq_print!(
        m,
        "{:<8} {:<10} {:<16} {:<10} {:<16} {:<10} {:<10} {:<10} {:<10} {:<10} {:<10} {:<10} {:<10} {:<10} {:<10} {:<10}\n",
        "Psock",
        "RX-Msgs",
        "RX-Bytes",
        "TX-Msgs",
        "TX-Bytes",
        "Reserved",
        "Unreserved",
        "RX-Aborts",
        "RX-Intr",
        "RX-Unrecov",
        "RX-MemFail",
        "RX-NeedMor",
        "RX-BadLen",
        "RX-TooBig",
        "RX-Timeout",
        "TX-Aborts"
    );
    let p = &psock_total;
    seq_print!(
        m,
        "{:<8} {:<10} {:<16} {:<10} {:<16} {:<10} {:<10} {:<10} {:<10} {:<10} {:<10} {:<10} {:<10} {:<10} {:<10} {:<10}\n",
        "",
        p.rx.msgs.get(),
        p.rx.bytes.get(),
        p.tx.msgs.get(),
        p.tx.bytes.get(),
        p.reserved.get(),
        p.unreserved.get(),
        p.rx_aborts.get(),
        0,
        0,
        p.rx_mem_fail.get(),
        0,
        p.rx_bad_len.get(),
        p.rx_too_big.get(),
        p.rx_timeouts.get(),
        p.tx_aborts.get()
    );
    Ok(())
}
