//! RTCP parsing never panics; a parsed compound packet prints and parses back to itself; an
//! RTCP session fed arbitrary datagrams and RTP sequence numbers never panics, nor does the
//! E-model on arbitrary inputs.
#![no_main]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use termphone::media::emodel::{mos, CodecImpairment, EmodelInput};
use termphone::media::rtcp::{build_compound, is_rtcp, parse_compound, CompoundIter};
use termphone::media::rtcp_session::{QualityInputs, RtcpConfig, RtcpSession};

fuzz_target!(|data: &[u8]| {
    let _ = is_rtcp(data);
    let walked: Vec<_> = CompoundIter::new(data).collect();
    if let Ok(pkts) = parse_compound(data) {
        assert_eq!(walked.len(), pkts.len());
        let bytes = build_compound(&pkts);
        assert_eq!(
            parse_compound(&bytes).expect("printed packets parse"),
            pkts
        );
    }

    let t0 = Instant::now();
    let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut s = RtcpSession::new(RtcpConfig::new(1, "fuzz", 8000, 7), t0);
    for (i, chunk) in data.chunks(8).enumerate() {
        let now = t0 + Duration::from_millis(20 * i as u64);
        if chunk.len() == 8 {
            // read as (ssrc low byte, seq, timestamp, flags)
            let ssrc = u32::from(chunk[0] & 3);
            let seq = u16::from_be_bytes([chunk[1], chunk[2]]);
            let ts = u32::from_be_bytes([chunk[3], chunk[4], chunk[5], chunk[6]]);
            if chunk[7] & 1 == 0 {
                s.on_rtp_received(now, ssrc, seq, ts, 8000);
            } else {
                s.on_rtp_received_untimed(now, ssrc, seq);
            }
            if chunk[7] & 2 != 0 {
                s.on_rtp_sent(now, ts, usize::from(chunk[0]));
            }
        }
        let _ = s.handle_rtcp(now, chunk);
        if let Some(at) = s.poll_timeout() {
            if at <= now {
                let _ = s.handle_timeout(now, wall + (now - t0));
            }
        }
    }
    let _ = s.handle_rtcp(t0 + Duration::from_secs(60), data);
    let _ = s.handle_timeout(t0 + Duration::from_secs(61), SystemTime::UNIX_EPOCH);
    let _ = s.bye(t0 + Duration::from_secs(62), wall, Some("fuzz"));

    if data.len() >= 32 {
        let f = |i: usize| {
            f64::from_le_bytes(data[i..i + 8].try_into().expect("8 bytes"))
        };
        let codec = CodecImpairment { ie: f(16), bpl: f(24) };
        let m = mos(&EmodelInput {
            one_way_delay_ms: f(0),
            loss_pct: f(8),
            burst_ratio: f(16),
            codec,
        });
        assert!((1.0..=4.5).contains(&m));
        let q = s.call_quality(&QualityInputs {
            codec,
            local_delay_ms: f(0),
            discard_pct: f(8),
            burst_ratio: f(24),
        });
        assert!((1.0..=4.5).contains(&q.mos));
    }
});
