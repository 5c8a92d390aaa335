//! ONNX export of a trained [`NetParams`]: the int8 QDQ graph that ONNX Runtime fuses into
//! QLinearConv / QGemm, the fp32 graph, the atomic install into a models directory, and a look at
//! what ORT makes of a graph after optimisation.
//!
//! The QDQ graph follows `net_params.rs`. These choices are what ORT needs to fuse the graph into
//! real int8 kernels: per-output-channel symmetric int8 weights, activations after ReLU quantised
//! with zero point -128 (a zero point of 0 blocks fusion and ran 3x slower than fp32), and int32
//! bias through DequantizeLinear with scale s_in * s_w.
//!
//! ```text
//! input f32 [batch,5,9,9] -> Q(s_in, 0) -> DQ
//!   -> Conv(DQ(int8 W, s_w[c], axis 0), DQ(int32 b, s_in*s_w[c], axis 0)) -> Relu -> Q(s_a, -128) -> DQ
//!   ...  DQ -> MaxPool -> Q (same scale) -> DQ ...
//!   ... DQ -> Flatten -> Q (same scale) -> DQ -> Gemm(transB=1) -> Relu -> Q -> DQ ... -> Gemm -> logits f32
//! ```
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context};
use prost::Message;

use crate::infer::contract::{ModelContract, CONTRACT_KEY};
use crate::infer::runtime;
use crate::onnx_proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::train::net_params::{LayerKind, NetParams, QuantParams};
use crate::train::reference::{
    check_quant, layer_input_shapes, quantize_bias, quantize_weights, Shape, ACTIVATION_ZERO_POINT,
};

/// ONNX opset of the exported graphs (per-axis DequantizeLinear needs >= 13; 21 is supported by
/// onnxruntime 1.31 and the onnx 1.23 checker).
pub const OPSET: i64 = 21;
/// IR version that goes with opset 21.
const IR_VERSION: i64 = 10;

/// Builds the int8 QDQ model. The contract's `quantization.format`, `weight_bits` and
/// `activation_bits` are set to what the file really holds.
pub fn build_qdq_model(
    net: &NetParams,
    q: &QuantParams,
    contract: &ModelContract,
) -> anyhow::Result<Vec<u8>> {
    let shapes = layer_input_shapes(net).context("network does not fit the export")?;
    check_quant(net, q).context("quantisation parameters do not fit the network")?;
    let mut contract = contract.clone();
    contract.quantization.format = "int8-qdq".into();
    contract.quantization.weight_bits = q.weight_bits;
    contract.quantization.activation_bits = 8;
    check_contract(net, &contract)?;

    let mut g = GraphBuilder::default();
    let qmax = q.weight_qmax();
    g.scalar_f32("input.scale", q.input_scale);
    g.scalar_i8("input.zp", 0);
    g.node(
        "QuantizeLinear",
        "input.q",
        &[&contract.input_name, "input.scale", "input.zp"],
        vec![],
    );
    let mut current = g.dequantize_activation("input.q", "input", needs_flatten(net, &shapes, 0));

    let last = net.layers.len() - 1;
    for (i, layer) in net.layers.iter().enumerate() {
        let name = layer.name.as_str();
        let n_out = layer.out_features as i64;
        let s_in = if i == 0 {
            q.input_scale
        } else {
            q.activation_scales[i - 1]
        };
        let weight_dims = match layer.kind {
            LayerKind::Conv3x3 => vec![n_out, layer.in_features as i64, 3, 3],
            LayerKind::Linear => vec![n_out, layer.in_features as i64],
        };
        let weight_q = quantize_weights(layer, &q.weight_scales[i], qmax);
        g.tensor_i8(&format!("{name}.weight.q"), &weight_dims, &weight_q);
        g.tensor_f32(
            &format!("{name}.weight.scale"),
            &[n_out],
            &q.weight_scales[i],
        );
        g.tensor_i8(
            &format!("{name}.weight.zp"),
            &[n_out],
            &vec![0; layer.out_features],
        );
        g.per_channel_dequantize(&format!("{name}.weight"));
        let (bias_q, bias_scale) = quantize_bias(&layer.bias, s_in, &q.weight_scales[i]);
        g.tensor_i32(&format!("{name}.bias.q"), &[n_out], &bias_q);
        g.tensor_f32(&format!("{name}.bias.scale"), &[n_out], &bias_scale);
        g.tensor_i32(
            &format!("{name}.bias.zp"),
            &[n_out],
            &vec![0; layer.out_features],
        );
        g.per_channel_dequantize(&format!("{name}.bias"));

        let out = if i == last {
            contract.output_name.clone()
        } else {
            format!("{name}.out")
        };
        g.linear_op(layer.kind.clone(), name, &current, &out);
        if i == last {
            break;
        }
        g.node("Relu", &format!("{name}.relu"), &[&out], vec![]);
        let scale = format!("{name}.act.scale");
        let zp = format!("{name}.act.zp");
        g.scalar_f32(&scale, q.activation_scales[i]);
        g.scalar_i8(&zp, ACTIVATION_ZERO_POINT as i8);
        let relu = format!("{name}.relu");
        g.node(
            "QuantizeLinear",
            &format!("{name}.q"),
            &[&relu, &scale, &zp],
            vec![],
        );
        let mut quantized = format!("{name}.q");
        if layer.pool_after {
            // DQ -> MaxPool -> Q with the same scale: ORT runs it as an int8 MaxPool.
            let dq = format!("{name}.dq");
            g.node("DequantizeLinear", &dq, &[&quantized, &scale, &zp], vec![]);
            g.max_pool(&format!("{name}.pool"), &dq);
            quantized = format!("{name}.pool.q");
            g.node(
                "QuantizeLinear",
                &quantized,
                &[&format!("{name}.pool"), &scale, &zp],
                vec![],
            );
        }
        current = g.dequantize_activation(&quantized, name, needs_flatten(net, &shapes, i + 1));
    }

    let model = g.finish(&contract, "int8 QDQ")?;
    Ok(model.encode_to_vec())
}

/// Builds the fp32 model (the same graph without Q/DQ).
pub fn build_fp32_model(net: &NetParams, contract: &ModelContract) -> anyhow::Result<Vec<u8>> {
    let shapes = layer_input_shapes(net).context("network does not fit the export")?;
    let mut contract = contract.clone();
    contract.quantization.format = "fp32".into();
    contract.quantization.weight_bits = 32;
    contract.quantization.activation_bits = 32;
    check_contract(net, &contract)?;

    let mut g = GraphBuilder::default();
    let mut current = contract.input_name.clone();
    if needs_flatten(net, &shapes, 0) {
        current = g.flatten("input.flat", &current);
    }
    let last = net.layers.len() - 1;
    for (i, layer) in net.layers.iter().enumerate() {
        let name = layer.name.as_str();
        let n_out = layer.out_features as i64;
        let weight_dims = match layer.kind {
            LayerKind::Conv3x3 => vec![n_out, layer.in_features as i64, 3, 3],
            LayerKind::Linear => vec![n_out, layer.in_features as i64],
        };
        g.tensor_f32(&format!("{name}.weight"), &weight_dims, &layer.weight);
        g.tensor_f32(&format!("{name}.bias"), &[n_out], &layer.bias);
        let out = if i == last {
            contract.output_name.clone()
        } else {
            format!("{name}.out")
        };
        g.linear_op(layer.kind.clone(), name, &current, &out);
        if i == last {
            break;
        }
        current = format!("{name}.relu");
        g.node("Relu", &current, &[&out], vec![]);
        if layer.pool_after {
            current = g.max_pool(&format!("{name}.pool"), &current);
        }
        if needs_flatten(net, &shapes, i + 1) {
            current = g.flatten(&format!("{name}.flat"), &current);
        }
    }
    let model = g.finish(&contract, "fp32")?;
    Ok(model.encode_to_vec())
}

/// Writes `bytes` to `dir/file_name` atomically: a hidden temp file in the same directory, fsync,
/// rename over the target, fsync the directory. A reader sees the old file or the new one, never a
/// partial one.
pub fn install_model(bytes: &[u8], dir: &Path, file_name: &str) -> anyhow::Result<PathBuf> {
    if file_name.is_empty() || file_name.contains('/') || file_name == "." || file_name == ".." {
        bail!("model file name '{file_name}' must be a plain file name");
    }
    fs::create_dir_all(dir)
        .with_context(|| format!("creating model directory {}", dir.display()))?;
    let target = dir.join(file_name);
    let temp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, &target)?;
        fs::File::open(dir)?.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&temp);
        return Err(e).with_context(|| format!("installing model {}", target.display()));
    }
    Ok(target)
}

/// Lets ONNX Runtime optimise the model as the daemon does (level 3) and returns the op types of
/// the optimised graph, in node order (with repeats). An int8 model that really runs as int8 shows
/// QLinearConv and QGemm (or MatMulInteger-style) nodes and no float Conv/Gemm.
pub fn fused_op_types(bytes: &[u8]) -> anyhow::Result<Vec<String>> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let env = runtime::environment()?;
    let path = std::env::temp_dir().join(format!(
        "affectd-optimized-{}-{}.onnx",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> anyhow::Result<Vec<String>> {
        let ort_err = |e: ort::Error<ort::session::builder::SessionBuilder>| {
            anyhow::anyhow!("configuring ONNX Runtime: {e}")
        };
        let _session = ort::session::Session::builder(&env)?
            .with_intra_threads(1)
            .map_err(ort_err)?
            .with_optimization_level(ort::session::builder::GraphOptimizationLevel::All)
            .map_err(ort_err)?
            .with_optimized_model_path(&path)
            .map_err(ort_err)?
            .commit_from_memory(bytes)
            .context("ONNX Runtime could not load the model")?;
        let optimized = fs::read(&path)
            .with_context(|| format!("reading the optimised model {}", path.display()))?;
        let model =
            ModelProto::decode(optimized.as_slice()).context("decoding the optimised model")?;
        Ok(model
            .graph
            .unwrap_or_default()
            .node
            .into_iter()
            .map(|n| n.op_type.unwrap_or_default())
            .collect())
    })();
    let _ = fs::remove_file(&path);
    result
}

fn check_contract(net: &NetParams, contract: &ModelContract) -> anyhow::Result<()> {
    contract.validate().context("model contract is invalid")?;
    let classes = net.layers.last().map_or(0, |l| l.out_features);
    if contract.classes.len() != classes {
        bail!(
            "contract names {} classes but the network outputs {classes}",
            contract.classes.len()
        );
    }
    let mut names = std::collections::HashSet::new();
    for layer in &net.layers {
        // Layer names prefix the graph's tensor names; "input" is taken by the input quantiser.
        if layer.name.is_empty() || layer.name == "input" || !names.insert(layer.name.as_str()) {
            bail!("layer name '{}' is empty, reserved or repeated", layer.name);
        }
    }
    if contract.input_name.is_empty()
        || contract.output_name.is_empty()
        || contract.input_name == contract.output_name
    {
        bail!(
            "contract input/output names '{}'/'{}' must be non-empty and distinct",
            contract.input_name,
            contract.output_name
        );
    }
    Ok(())
}

/// Whether layer `i` is Linear and its input is still a feature map.
fn needs_flatten(net: &NetParams, shapes: &[Shape], i: usize) -> bool {
    net.layers
        .get(i)
        .is_some_and(|l| l.kind == LayerKind::Linear)
        && matches!(shapes.get(i), Some(Shape::Map { .. }))
}

#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl GraphBuilder {
    /// Adds a node whose single output has the node's name.
    fn node(&mut self, op: &str, output: &str, inputs: &[&str], attribute: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: Some(output.to_string()),
            op_type: Some(op.to_string()),
            attribute,
            ..Default::default()
        });
    }

    /// Conv (3x3, pad 1) or Gemm (transB) of `input` with `{name}.weight` / `{name}.bias`.
    fn linear_op(&mut self, kind: LayerKind, name: &str, input: &str, output: &str) {
        let (w, b) = (format!("{name}.weight"), format!("{name}.bias"));
        let (op, attrs) = match kind {
            LayerKind::Conv3x3 => (
                "Conv",
                vec![
                    attr_ints("kernel_shape", &[3, 3]),
                    attr_ints("pads", &[1, 1, 1, 1]),
                    attr_ints("strides", &[1, 1]),
                ],
            ),
            LayerKind::Linear => ("Gemm", vec![attr_int("transB", 1)]),
        };
        self.node(op, output, &[input, &w, &b], attrs);
    }

    fn max_pool(&mut self, output: &str, input: &str) -> String {
        self.node(
            "MaxPool",
            output,
            &[input],
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                attr_ints("strides", &[2, 2]),
            ],
        );
        output.to_string()
    }

    fn flatten(&mut self, output: &str, input: &str) -> String {
        self.node("Flatten", output, &[input], vec![attr_int("axis", 1)]);
        output.to_string()
    }

    /// DequantizeLinear of `{name}.q` with per-output-channel `{name}.scale` / `{name}.zp`.
    fn per_channel_dequantize(&mut self, name: &str) {
        self.node(
            "DequantizeLinear",
            name,
            &[
                &format!("{name}.q"),
                &format!("{name}.scale"),
                &format!("{name}.zp"),
            ],
            vec![attr_int("axis", 0)],
        );
    }

    /// Dequantises the int8 activation `quantized` (whose scale/zero point initializers are
    /// `{prefix}.act.*`, or `input.*` for the input), flattening it first when `flatten`.
    fn dequantize_activation(&mut self, quantized: &str, prefix: &str, flatten: bool) -> String {
        let (scale, zp) = if prefix == "input" {
            ("input.scale".to_string(), "input.zp".to_string())
        } else {
            (format!("{prefix}.act.scale"), format!("{prefix}.act.zp"))
        };
        let mut quantized = quantized.to_string();
        if flatten {
            // DQ -> Flatten -> Q with one scale: ORT drops the pair and flattens the int8 tensor.
            let dq = format!("{prefix}.flat.dq");
            self.node("DequantizeLinear", &dq, &[&quantized, &scale, &zp], vec![]);
            let flat = self.flatten(&format!("{prefix}.flat"), &dq);
            quantized = format!("{prefix}.flat.q");
            self.node("QuantizeLinear", &quantized, &[&flat, &scale, &zp], vec![]);
        }
        let out = format!("{prefix}.dq.in");
        self.node("DequantizeLinear", &out, &[&quantized, &scale, &zp], vec![]);
        out
    }

    fn tensor(&mut self, name: &str, dims: &[i64], data_type: DataType, raw: Vec<u8>) {
        self.initializers.push(TensorProto {
            dims: dims.to_vec(),
            data_type: Some(data_type as i32),
            name: Some(name.to_string()),
            raw_data: Some(raw),
            ..Default::default()
        });
    }

    fn tensor_f32(&mut self, name: &str, dims: &[i64], data: &[f32]) {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, DataType::Float, raw);
    }

    fn tensor_i8(&mut self, name: &str, dims: &[i64], data: &[i8]) {
        let raw = data.iter().map(|&v| v as u8).collect();
        self.tensor(name, dims, DataType::Int8, raw);
    }

    fn tensor_i32(&mut self, name: &str, dims: &[i64], data: &[i32]) {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, DataType::Int32, raw);
    }

    fn scalar_f32(&mut self, name: &str, v: f32) {
        self.tensor_f32(name, &[], &[v]);
    }

    fn scalar_i8(&mut self, name: &str, v: i8) {
        self.tensor_i8(name, &[], &[v]);
    }

    fn finish(self, contract: &ModelContract, kind: &str) -> anyhow::Result<ModelProto> {
        let n_classes = contract.classes.len() as i64;
        let batch = || dim_param("batch");
        let graph = GraphProto {
            node: self.nodes,
            name: Some("affectd".into()),
            initializer: self.initializers,
            doc_string: Some(format!("affectd emotion CNN ({kind})")),
            input: vec![value_info(
                &contract.input_name,
                vec![
                    batch(),
                    dim(contract.input_shape[1]),
                    dim(contract.input_shape[2]),
                    dim(contract.input_shape[3]),
                ],
            )],
            output: vec![value_info(
                &contract.output_name,
                vec![batch(), dim(n_classes)],
            )],
            ..Default::default()
        };
        Ok(ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(OPSET),
            }],
            producer_name: Some("affectd".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            model_version: Some(1),
            doc_string: Some(format!(
                "affectd EEG emotion model ({kind}); input: normalised differential entropy \
                 [batch, 5 bands, 9, 9]; output: logits over {:?}; the contract is in metadata \
                 key '{CONTRACT_KEY}'",
                contract.classes
            )),
            graph: Some(graph),
            metadata_props: vec![StringStringEntryProto {
                key: Some(CONTRACT_KEY.into()),
                value: Some(contract.to_json()),
            }],
            ..Default::default()
        })
    }
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn dim(v: i64) -> tensor_shape_proto::Dimension {
    tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimValue(v)),
        ..Default::default()
    }
}

fn dim_param(name: &str) -> tensor_shape_proto::Dimension {
    tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimParam(name.into())),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: Vec<tensor_shape_proto::Dimension>) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim: dims }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::INPUT_LEN;
    use crate::train::reference::{calibrate_minmax, random_net};

    fn contract() -> ModelContract {
        let mut c = crate::infer::contract::tests::contract();
        c.input_name = "x".into();
        c.classes = vec!["a".into(), "b".into(), "c".into()];
        c.quantization.format = "whatever".into();
        c.quantization.qat = true;
        c
    }

    fn error_text(r: anyhow::Result<Vec<u8>>) -> String {
        format!("{:#}", r.expect_err("export should fail"))
    }

    #[test]
    fn the_written_contract_states_the_real_format() {
        let net = random_net(1, 3);
        let q = calibrate_minmax(&net, &vec![0.3; INPUT_LEN], 1, 7);
        for (bytes, format, bits) in [
            (
                build_qdq_model(&net, &q, &contract()).unwrap(),
                "int8-qdq",
                7,
            ),
            (build_fp32_model(&net, &contract()).unwrap(), "fp32", 32),
        ] {
            let model = ModelProto::decode(bytes.as_slice()).unwrap();
            let entry = &model.metadata_props[0];
            assert_eq!(entry.key.as_deref(), Some(CONTRACT_KEY));
            let written = ModelContract::from_json(entry.value.as_deref().unwrap()).unwrap();
            assert_eq!(written.quantization.format, format);
            assert_eq!(written.quantization.weight_bits, bits);
            assert!(written.quantization.qat, "other fields are kept");
            assert_eq!(model.opset_import[0].version, Some(OPSET));
        }
    }

    #[test]
    fn export_refuses_what_does_not_fit() {
        let net = random_net(1, 3);
        let q = calibrate_minmax(&net, &vec![0.3; INPUT_LEN], 1, 8);
        let mut two_classes = contract();
        two_classes.classes.pop();
        let err = error_text(build_qdq_model(&net, &q, &two_classes));
        assert!(
            err.contains("2 classes") && err.contains("outputs 3"),
            "{err}"
        );

        let mut bad_q = q.clone();
        bad_q.activation_scales[2] = f32::NAN;
        let err = error_text(build_qdq_model(&net, &bad_q, &contract()));
        assert!(err.contains("activation scale NaN"), "{err}");

        let mut renamed = net.clone();
        renamed.layers[4].name = "fc1".into();
        let err = error_text(build_fp32_model(&renamed, &contract()));
        assert!(err.contains("'fc1'") && err.contains("repeated"), "{err}");

        let mut short = net.clone();
        short.layers[2].bias.pop();
        let err = error_text(build_fp32_model(&short, &contract()));
        assert!(err.contains("conv3") && err.contains("bias"), "{err}");
    }
}
