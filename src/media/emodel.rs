//! The ITU-T G.107 E-model: transmission rating R from delay, packet loss and the codec, and
//! MOS-CQE from R (G.107 Annex B).
//!
//! R = Ro − Is − Id − Ie,eff + A (ITU-T G.107). [`evaluate`] computes every term from the full
//! parameter set ([`EmodelParams`], G.107's default values); [`r_factor`] is the shortcut a
//! softphone needs: only delay, loss, burst ratio and codec differ from the defaults.
//!
//! This is the narrowband (3.1 kHz) model: its best rating with all defaults is R = 93.2. Wideband
//! codecs are rated here on that scale too (see [`CodecImpairment`]).

/// A codec's impairment in the E-model: equipment impairment factor Ie and packet-loss
/// robustness factor Bpl (G.107), with values from ITU-T G.113 Appendix I where they exist.
///
/// The G.711 values are the ones G.113 Appendix I gives for random packet loss, as widely
/// quoted; they were not checked against the Recommendation's own text, so no table numbers
/// are given here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecImpairment {
    /// Equipment impairment factor Ie (0 for G.711).
    pub ie: f64,
    /// Packet-loss robustness factor Bpl.
    pub bpl: f64,
}

impl CodecImpairment {
    /// G.711 (PCMU/PCMA) with the packet-loss concealment of G.711 Appendix I:
    /// Ie = 0, Bpl = 25.1 (G.113 Appendix I, random packet loss).
    pub const G711_PLC: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 25.1 };
    /// G.711 without concealment (lost frames played as silence): Ie = 0, Bpl = 4.3 (G.113
    /// Appendix I, random packet loss).
    pub const G711_NO_PLC: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 4.3 };
    /// G.722 at 64 kbit/s — an estimate, not a standard value. G.113 rates G.722 only on the
    /// wideband scale of G.107.1 (Appendix IV, Ie,wb), which does not transfer to this
    /// narrowband model; within a narrowband rating a wideband codec is at least as good as
    /// G.711, so Ie = 0. Its concealment (G.722 Appendices III/IV) is of the same class as
    /// G.711 Appendix I, so Bpl is taken from G.711 with PLC (25.1).
    pub const G722_PLC_ESTIMATE: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 25.1 };
    /// G.722 without concealment — an estimate: Ie = 0 as above, Bpl = 4.3 as G.711 without
    /// PLC (a lost frame is silence either way).
    pub const G722_NO_PLC_ESTIMATE: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 4.3 };
    /// Opus at speech bit rates (≥ 16 kbit/s) — an estimate: ITU-T publishes no Ie or Bpl for
    /// Opus (G.113 has none). Ie = 0 because Opus at these rates is rated at least as good as
    /// G.711 in listening tests; Bpl = 25.1 (as G.711 with Appendix I PLC) for its built-in
    /// concealment. In-band FEC (LBRR) would make it more robust; that is not modelled.
    pub const OPUS_ESTIMATE: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 25.1 };

    /// The impairment for an SDP encoding name (case-insensitive: PCMU, PCMA, G722, opus),
    /// with or without packet-loss concealment; None for other codecs. Note that G.113's
    /// G.711 PLC value is for the G.711 Appendix I algorithm; a simpler concealment (repeat
    /// and fade) sits between the two G.711 values.
    pub fn for_codec(name: &str, plc: bool) -> Option<CodecImpairment> {
        let n = name.to_ascii_uppercase();
        Some(match (n.as_str(), plc) {
            ("PCMU" | "PCMA", true) => CodecImpairment::G711_PLC,
            ("PCMU" | "PCMA", false) => CodecImpairment::G711_NO_PLC,
            ("G722", true) => CodecImpairment::G722_PLC_ESTIMATE,
            ("G722", false) => CodecImpairment::G722_NO_PLC_ESTIMATE,
            ("OPUS", _) => CodecImpairment::OPUS_ESTIMATE,
            _ => return None,
        })
    }
}

/// All E-model inputs of G.107. `Default` gives G.107's default values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmodelParams {
    /// Send loudness rating SLR, dB (8).
    pub slr: f64,
    /// Receive loudness rating RLR, dB (2).
    pub rlr: f64,
    /// Sidetone masking rating STMR, dB (15).
    pub stmr: f64,
    /// Listener sidetone rating LSTR, dB (18).
    pub lstr: f64,
    /// D-value of the telephone, send side (3).
    pub ds: f64,
    /// D-value of the telephone, receive side (3).
    pub dr: f64,
    /// Talker echo loudness rating TELR, dB (65).
    pub telr: f64,
    /// Weighted echo path loss WEPL, dB (110).
    pub wepl: f64,
    /// Mean one-way delay of the echo path T, ms (0).
    pub t: f64,
    /// Round-trip delay in a 4-wire loop Tr, ms (0).
    pub tr: f64,
    /// Absolute delay in echo-free connections Ta, ms (0).
    pub ta: f64,
    /// Number of quantization distortion units qdu (1).
    pub qdu: f64,
    /// Equipment impairment factor Ie (0).
    pub ie: f64,
    /// Packet-loss robustness factor Bpl (4.3 here: G.711 without PLC, G.113 Appendix I; it
    /// only matters once Ppl > 0).
    pub bpl: f64,
    /// Random packet-loss probability Ppl, % (0).
    pub ppl: f64,
    /// Burst ratio BurstR (1: random loss).
    pub burst_r: f64,
    /// Circuit noise referred to the 0 dBr point Nc, dBm0p (−70).
    pub nc: f64,
    /// Noise floor at the receive side Nfor, dBmp (−64).
    pub nfor: f64,
    /// Room noise at the send side Ps, dB(A) (35).
    pub ps: f64,
    /// Room noise at the receive side Pr, dB(A) (35).
    pub pr: f64,
    /// Advantage factor A (0).
    pub a: f64,
    /// Delay sensitivity mT of Idd, ms (100).
    pub mt: f64,
    /// Delay sensitivity sT of Idd (1).
    pub st: f64,
}

impl Default for EmodelParams {
    fn default() -> EmodelParams {
        EmodelParams {
            slr: 8.0,
            rlr: 2.0,
            stmr: 15.0,
            lstr: 18.0,
            ds: 3.0,
            dr: 3.0,
            telr: 65.0,
            wepl: 110.0,
            t: 0.0,
            tr: 0.0,
            ta: 0.0,
            qdu: 1.0,
            ie: 0.0,
            bpl: 4.3,
            ppl: 0.0,
            burst_r: 1.0,
            nc: -70.0,
            nfor: -64.0,
            ps: 35.0,
            pr: 35.0,
            a: 0.0,
            mt: 100.0,
            st: 1.0,
        }
    }
}

/// The terms of one E-model evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmodelResult {
    /// Basic signal-to-noise ratio Ro.
    pub ro: f64,
    /// Simultaneous impairment factor Is (Iolr + Ist + Iq).
    pub is: f64,
    /// Delay impairment factor Id (Idte + Idle + Idd).
    pub id: f64,
    /// Talker echo impairment Idte.
    pub idte: f64,
    /// Listener echo impairment Idle.
    pub idle: f64,
    /// Impairment of too-long absolute delay Idd.
    pub idd: f64,
    /// Effective equipment impairment factor Ie,eff.
    pub ie_eff: f64,
    /// Transmission rating R (not clamped).
    pub r: f64,
}

fn lg(x: f64) -> f64 {
    x.log10()
}

fn p10(x: f64) -> f64 {
    10f64.powf(x)
}

/// Evaluate the E-model (G.107) for a full parameter set.
pub fn evaluate(p: &EmodelParams) -> EmodelResult {
    // basic signal-to-noise ratio Ro
    let olr = p.slr + p.rlr;
    let nos = p.ps - p.slr - p.ds - 100.0 + 0.004 * (p.ps - olr - p.ds - 14.0).powi(2);
    let pre = p.pr + 10.0 * lg(1.0 + p10((10.0 - p.lstr) / 10.0));
    let nor = p.rlr - 121.0 + pre + 0.008 * (pre - 35.0).powi(2);
    let nfo = p.nfor + p.rlr;
    let no = 10.0 * lg(p10(p.nc / 10.0) + p10(nos / 10.0) + p10(nor / 10.0) + p10(nfo / 10.0));
    let ro = 15.0 - 1.5 * (p.slr + no);

    // simultaneous impairment factor Is
    let xolr = olr + 0.2 * (64.0 + no - p.rlr);
    let iolr = 20.0 * ((1.0 + (xolr / 8.0).powi(8)).powf(1.0 / 8.0) - xolr / 8.0);
    let stmro = -10.0 * lg(p10(-p.stmr / 10.0) + (-p.t / 4.0).exp() * p10(-p.telr / 10.0));
    let ist = 12.0 * (1.0 + ((stmro - 13.0) / 6.0).powi(8)).powf(1.0 / 8.0)
        - 28.0 * (1.0 + ((stmro + 1.0) / 19.4).powi(35)).powf(1.0 / 35.0)
        - 13.0 * (1.0 + ((stmro - 3.0) / 33.0).powi(13)).powf(1.0 / 13.0)
        + 29.0;
    let q = 37.0 - 15.0 * lg(p.qdu);
    let g = 1.07 + 0.258 * q + 0.0602 * q * q;
    let y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0;
    let z = 46.0 / 30.0 - g / 40.0;
    let iq = 15.0 * lg(1.0 + p10(y) + p10(z));
    let is = iolr + ist + iq;

    // delay impairment factor Id
    let idte = {
        let roe = -1.5 * (no - p.rlr);
        let mut terv = p.telr - 40.0 * lg((1.0 + p.t / 10.0) / (1.0 + p.t / 150.0))
            + 6.0 * (-0.3 * p.t * p.t).exp();
        if p.stmr < 9.0 {
            terv += ist / 2.0;
        }
        let re = 80.0 + 2.5 * (terv - 14.0);
        let d = roe - re;
        let idte = (d / 2.0 + (d * d / 4.0 + 100.0).sqrt() - 1.0) * (1.0 - (-p.t).exp());
        if p.stmr > 20.0 {
            (idte * idte + ist * ist).sqrt()
        } else {
            idte
        }
    };
    let rle = 10.5 * (p.wepl + 7.0) * (p.tr + 1.0).powf(-0.25);
    let idle = (ro - rle) / 2.0 + ((ro - rle).powi(2) / 4.0 + 169.0).sqrt();
    let idd = if p.ta <= p.mt {
        0.0
    } else {
        let x = lg(p.ta / p.mt) / lg(2.0);
        let e = 6.0 * p.st;
        25.0 * ((1.0 + x.powf(e)).powf(1.0 / e) - 3.0 * (1.0 + (x / 3.0).powf(e)).powf(1.0 / e)
            + 2.0)
    };
    let id = idte + idle + idd;

    // effective equipment impairment factor with packet loss
    let ie_eff = if p.ppl > 0.0 {
        p.ie + (95.0 - p.ie) * p.ppl / (p.ppl / p.burst_r + p.bpl)
    } else {
        p.ie
    };

    EmodelResult {
        ro,
        is,
        id,
        idte,
        idle,
        idd,
        ie_eff,
        r: ro - is - id - ie_eff + p.a,
    }
}

/// What a call gives the E-model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmodelInput {
    /// Mouth-to-ear (one-way) delay, ms.
    pub one_way_delay_ms: f64,
    /// Effective packet loss (network loss plus jitter-buffer discards), percent.
    pub loss_pct: f64,
    /// Burst ratio (1 for random loss).
    pub burst_ratio: f64,
    /// The codec.
    pub codec: CodecImpairment,
}

impl EmodelInput {
    /// The full parameter set: G.107 defaults, with Ta = T = the one-way delay and Tr = twice it
    /// (the echo path of a VoIP terminal is the whole mouth-to-ear path; echo is controlled to
    /// the default TELR of 65 dB), and Ppl, BurstR, Ie, Bpl from the input. Out-of-range or
    /// NaN inputs are clamped: delay ≥ 0, loss 0..=100, burst ratio ≥ 0.01, Bpl ≥ 0.01.
    pub fn params(&self) -> EmodelParams {
        let finite = |x: f64, default: f64| if x.is_finite() { x } else { default };
        let d = finite(self.one_way_delay_ms, 0.0).max(0.0);
        EmodelParams {
            t: d,
            ta: d,
            tr: 2.0 * d,
            ppl: finite(self.loss_pct, 0.0).clamp(0.0, 100.0),
            burst_r: finite(self.burst_ratio, 1.0).max(0.01),
            ie: finite(self.codec.ie, 0.0),
            bpl: finite(self.codec.bpl, 4.3).max(0.01),
            ..EmodelParams::default()
        }
    }
}

/// R for a call, clamped to 0..=100.
pub fn r_factor(input: &EmodelInput) -> f64 {
    let r = evaluate(&input.params()).r;
    if r.is_finite() {
        r.clamp(0.0, 100.0)
    } else {
        0.0
    }
}

/// MOS-CQE from R (G.107 Annex B): 1 below R = 0, 4.5 above 100, else
/// 1 + 0.035 R + R (R − 60)(100 − R) · 7·10⁻⁶ (kept at least 1: the polynomial dips just under
/// 1 for R below about 6.5).
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6).max(1.0)
    }
}

/// MOS-CQE for a call.
pub fn mos(input: &EmodelInput) -> f64 {
    mos_from_r(r_factor(input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_terms() {
        // With G.107's default values: Ro ≈ 94.77, Is ≈ 1.41, Id ≈ 0.15 (listener echo only),
        // R = 93.2, the rating G.107 gives for its defaults.
        let e = evaluate(&EmodelParams::default());
        assert!((e.ro - 94.77).abs() < 0.01, "Ro {}", e.ro);
        assert!((e.is - 1.41).abs() < 0.01, "Is {}", e.is);
        assert!((e.id - 0.15).abs() < 0.01, "Id {}", e.id);
        assert_eq!(e.idte, 0.0);
        assert_eq!(e.idd, 0.0);
        assert!((e.r - 93.2).abs() < 0.05, "R {}", e.r);
    }

    #[test]
    fn mos_edges() {
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(f64::NAN), 1.0);
        assert_eq!(mos_from_r(100.0), 4.5);
        assert_eq!(mos_from_r(3.0), 1.0);
        assert!((mos_from_r(60.0) - 3.1).abs() < 1e-12);
    }

    #[test]
    fn codec_table() {
        assert_eq!(
            CodecImpairment::for_codec("pcmu", true),
            Some(CodecImpairment::G711_PLC)
        );
        assert_eq!(
            CodecImpairment::for_codec("PCMA", false),
            Some(CodecImpairment::G711_NO_PLC)
        );
        assert_eq!(
            CodecImpairment::for_codec("opus", false),
            Some(CodecImpairment::OPUS_ESTIMATE)
        );
        assert!(CodecImpairment::for_codec("G722", true).is_some());
        assert_eq!(CodecImpairment::for_codec("G729", true), None);
    }
}
