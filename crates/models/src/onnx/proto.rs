//! The ONNX messages quarc writes, encoded as protobuf by hand (a few dozen lines instead of a
//! code generator). Field numbers from onnx.proto (ONNX IR version 8).

/// Element types of ONNX tensors (`TensorProto.DataType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DataType {
    Float = 1,
    Uint8 = 2,
    Int8 = 3,
    Int64 = 7,
}

/// A protobuf message being written.
#[derive(Default)]
pub(crate) struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }

    /// An integer field (int32, int64, enum).
    pub(crate) fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.key(field, 0);
        self.varint(v as u64);
        self
    }

    /// A bytes or string field.
    pub(crate) fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.key(field, 2);
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }

    /// A string field.
    pub(crate) fn string(&mut self, field: u32, v: &str) -> &mut Self {
        self.bytes(field, v.as_bytes())
    }

    /// An embedded message.
    pub(crate) fn message(&mut self, field: u32, m: &Message) -> &mut Self {
        self.bytes(field, &m.0)
    }

    /// The encoded bytes.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A constant tensor (`TensorProto`) with raw little-endian data.
pub(crate) struct TensorData {
    pub name: String,
    pub dims: Vec<usize>,
    pub dtype: DataType,
    pub raw: Vec<u8>,
}

impl TensorData {
    pub(crate) fn f32(name: &str, dims: &[usize], v: &[f32]) -> Self {
        Self {
            name: name.into(),
            dims: dims.to_vec(),
            dtype: DataType::Float,
            raw: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    pub(crate) fn i8(name: &str, dims: &[usize], v: &[i8]) -> Self {
        Self {
            name: name.into(),
            dims: dims.to_vec(),
            dtype: DataType::Int8,
            raw: v.iter().map(|&x| x as u8).collect(),
        }
    }

    pub(crate) fn u8(name: &str, dims: &[usize], v: &[u8]) -> Self {
        Self {
            name: name.into(),
            dims: dims.to_vec(),
            dtype: DataType::Uint8,
            raw: v.to_vec(),
        }
    }

    pub(crate) fn i64(name: &str, dims: &[usize], v: &[i64]) -> Self {
        Self {
            name: name.into(),
            dims: dims.to_vec(),
            dtype: DataType::Int64,
            raw: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    pub(crate) fn encode(&self) -> Message {
        let mut m = Message::default();
        for &d in &self.dims {
            m.int(1, d as i64);
        }
        m.int(2, self.dtype as i64).string(8, &self.name).bytes(9, &self.raw);
        m
    }
}

/// A node attribute.
pub(crate) enum Attr {
    Int(i64),
    Ints(Vec<i64>),
}

/// One graph node (`NodeProto`).
pub(crate) struct Node {
    pub op: &'static str,
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: Vec<(&'static str, Attr)>,
}

impl Node {
    pub(crate) fn encode(&self) -> Message {
        let mut m = Message::default();
        for i in &self.inputs {
            m.string(1, i);
        }
        for o in &self.outputs {
            m.string(2, o);
        }
        m.string(3, &self.name).string(4, self.op);
        for (name, a) in &self.attrs {
            let mut am = Message::default();
            am.string(1, name);
            match a {
                Attr::Int(i) => am.int(20, 2).int(3, *i),
                Attr::Ints(v) => {
                    am.int(20, 7);
                    for &i in v {
                        am.int(8, i);
                    }
                    &mut am
                }
            };
            m.message(5, &am);
        }
        m
    }
}

/// A graph input or output: an f32 tensor whose first dimension may be symbolic.
pub(crate) fn value_info(name: &str, dims: &[Option<usize>], symbol: &str) -> Message {
    let mut shape = Message::default();
    for d in dims {
        let mut dim = Message::default();
        match d {
            Some(v) => dim.int(1, *v as i64),
            None => dim.string(2, symbol),
        };
        shape.message(1, &dim);
    }
    let mut tensor = Message::default();
    tensor.int(1, DataType::Float as i64).message(2, &shape);
    let mut ty = Message::default();
    ty.message(1, &tensor);
    let mut m = Message::default();
    m.string(1, name).message(2, &ty);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-encoded bytes of small messages, checked against the protobuf wire format.
    #[test]
    fn wire_format_of_varints_and_strings() {
        let mut m = Message::default();
        m.int(1, 300).string(2, "ab");
        assert_eq!(m.into_bytes(), [0x08, 0xAC, 0x02, 0x12, 2, b'a', b'b']);
        let mut neg = Message::default();
        neg.int(1, -1); // int64 −1: ten bytes of two's complement
        assert_eq!(neg.into_bytes().len(), 11);
    }
}
