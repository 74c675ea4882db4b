//! Properties of the RESP codec over generated input: arbitrary bytes never
//! panic, arbitrary frames and requests survive encode-then-decode, and a
//! stream cut anywhere decodes as if it had arrived whole.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]

use cairn_server::resp::{
    Args, CommandDecoder, Decoder, Frame, Limits, RespVersion, decode, decode_command,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn line_text() -> impl Strategy<Value = Vec<u8>> {
    vec(
        any::<u8>().prop_filter("no CR or LF", |b| *b != b'\r' && *b != b'\n'),
        0..12,
    )
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..24)
}

/// Any RESP3 frame but the two RESP2 nulls (a RESP3 client is sent `_` for
/// those, which decodes as `Null`), NaN (not equal to itself), and line
/// payloads with CR or LF (sent as spaces). Up to 4 levels, 64 nodes.
fn resp3_frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        line_text().prop_map(Frame::Simple),
        line_text().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        bytes().prop_map(Frame::Bulk),
        Just(Frame::Null),
        any::<bool>().prop_map(Frame::Boolean),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |d| !d.is_nan())
            .prop_map(Frame::Double),
        "[+-]?[0-9]{1,40}".prop_map(|s| Frame::BigNumber(s.into_bytes())),
        bytes().prop_map(Frame::BulkError),
        (any::<[u8; 3]>(), bytes()).prop_map(|(format, text)| Frame::Verbatim { format, text }),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Frame::Array),
            vec((inner.clone(), inner.clone()), 0..4).prop_map(Frame::Map),
            vec(inner.clone(), 0..6).prop_map(Frame::Set),
            vec(inner.clone(), 0..6).prop_map(Frame::Push),
            (vec((inner.clone(), inner.clone()), 0..3), inner).prop_map(|(attributes, data)| {
                Frame::Attribute {
                    attributes,
                    data: Box::new(data),
                }
            }),
        ]
    })
}

/// Any RESP2 frame (line payloads without CR or LF).
fn resp2_frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        line_text().prop_map(Frame::Simple),
        line_text().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        bytes().prop_map(Frame::Bulk),
        Just(Frame::NullBulk),
        Just(Frame::NullArray),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| vec(inner, 0..6).prop_map(Frame::Array))
}

fn requests() -> impl Strategy<Value = Vec<Args>> {
    vec(vec(bytes(), 1..6), 1..6)
}

fn encode_all(frames: &[Frame], version: RespVersion) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in frames {
        frame.encode(&mut out, version);
    }
    out
}

fn multibulk(args: &Args) -> Vec<u8> {
    let frame = Frame::Array(args.iter().cloned().map(Frame::Bulk).collect());
    encode_all(&[frame], RespVersion::Resp2)
}

/// Feeds `buf` to a `Decoder` in pieces ending at each of `cuts`, dropping
/// consumed bytes as a server would.
fn decode_in_pieces(buf: &[u8], cuts: &[usize]) -> Vec<Frame> {
    let mut decoder = Decoder::new(Limits::default());
    let mut pending = Vec::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    for &cut in cuts.iter().chain([&buf.len()]) {
        let cut = cut.clamp(fed, buf.len());
        pending.extend_from_slice(&buf[fed..cut]);
        fed = cut;
        while let Some((frame, used)) = decoder.decode(&pending).unwrap() {
            frames.push(frame);
            pending.drain(..used);
        }
    }
    assert!(pending.is_empty());
    frames
}

proptest! {
    // Pins "never panic on input": any bytes give a frame, need-more or an
    // error, through both decoders, whole and a byte at a time.
    #[test]
    fn random_bytes_never_panic(buf in vec(any::<u8>(), 0..256)) {
        let limits = Limits { max_depth: 4, max_inline_bytes: 64, ..Limits::default() };
        let _ = decode(&buf, &limits);
        let _ = decode_command(&buf, &limits);
        let mut frames = Decoder::new(limits);
        let mut commands = CommandDecoder::new(limits);
        for end in 0..=buf.len() {
            if !matches!(frames.decode(&buf[..end]), Ok(None)) {
                break;
            }
        }
        for end in 0..=buf.len() {
            if !matches!(commands.decode(&buf[..end]), Ok(None)) {
                break;
            }
        }
    }

    // Pins "never panic" near valid input too, where random bytes rarely
    // reach: a valid encoding with a few bytes overwritten or cut.
    #[test]
    fn mangled_frames_never_panic(
        frame in resp3_frame(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = encode_all(&[frame], RespVersion::Resp3);
        for (at, byte) in edits {
            let at = at.index(buf.len());
            buf[at] = byte;
        }
        let end = cut.index(buf.len() + 1);
        let _ = decode(&buf[..end], &Limits::default());
        let _ = decode_command(&buf[..end], &Limits::default());
    }

    // Pins that any RESP3 frame, encoded for a RESP3 client, decodes back to
    // itself using exactly its own bytes.
    #[test]
    fn any_resp3_frame_roundtrips(frame in resp3_frame()) {
        let buf = encode_all(std::slice::from_ref(&frame), RespVersion::Resp3);
        let (decoded, used) = decode(&buf, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(decoded, frame);
        prop_assert_eq!(used, buf.len());
    }

    // Pins the same for RESP2 frames sent to a RESP2 client.
    #[test]
    fn any_resp2_frame_roundtrips(frame in resp2_frame()) {
        let buf = encode_all(std::slice::from_ref(&frame), RespVersion::Resp2);
        let (decoded, used) = decode(&buf, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(decoded, frame);
        prop_assert_eq!(used, buf.len());
    }

    // Pins that whatever a RESP2 client is sent contains only RESP2 types.
    #[test]
    fn resp2_encoding_uses_only_resp2_types(frame in resp3_frame()) {
        let buf = encode_all(&[frame], RespVersion::Resp2);
        let (decoded, _) = decode(&buf, &Limits::default()).unwrap().unwrap();
        prop_assert!(only_resp2(&decoded), "{:?}", decoded);
    }

    // Pins the resumable decoder: a stream of frames cut at arbitrary points
    // decodes to the same frames as the stream whole.
    #[test]
    fn frames_cut_anywhere_decode_the_same(
        frames in vec(resp3_frame(), 1..4),
        cuts in vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let buf = encode_all(&frames, RespVersion::Resp3);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(buf.len() + 1)).collect();
        cuts.sort_unstable();
        prop_assert_eq!(decode_in_pieces(&buf, &cuts), frames);
    }

    // Pins the same for requests through the request decoder.
    #[test]
    fn requests_cut_anywhere_decode_the_same(
        requests in requests(),
        cuts in vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let buf: Vec<u8> = requests.iter().flat_map(multibulk).collect();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(buf.len() + 1)).collect();
        cuts.sort_unstable();
        let mut decoder = CommandDecoder::new(Limits::default());
        let mut pending = Vec::new();
        let mut got = Vec::new();
        let mut fed = 0;
        for cut in cuts.into_iter().chain([buf.len()]) {
            pending.extend_from_slice(&buf[fed..cut.max(fed)]);
            fed = cut.max(fed);
            while let Some((args, used)) = decoder.decode(&pending).unwrap() {
                got.push(args);
                pending.drain(..used);
            }
        }
        prop_assert_eq!(got, requests);
    }

    // Pins inline quoting: any arguments, written inline in double quotes
    // with every byte as a \xHH escape, split back to the same arguments.
    #[test]
    fn inline_hex_quoted_arguments_roundtrip(args in vec(bytes(), 1..6)) {
        let mut line = Vec::new();
        for arg in &args {
            line.extend_from_slice(b" \"");
            for byte in arg {
                line.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
            }
            line.push(b'"');
        }
        line.extend_from_slice(b"\r\n");
        let (decoded, used) = decode_command(&line, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(decoded, args);
        prop_assert_eq!(used, line.len());
    }
}

fn only_resp2(frame: &Frame) -> bool {
    match frame {
        Frame::Simple(_)
        | Frame::Error(_)
        | Frame::Integer(_)
        | Frame::Bulk(_)
        | Frame::NullBulk
        | Frame::NullArray => true,
        Frame::Array(items) => items.iter().all(only_resp2),
        _ => false,
    }
}
