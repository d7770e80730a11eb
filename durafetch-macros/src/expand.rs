//! Code generation: the user's functions gain one call into `durafetch_sdk::__private` at the top,
//! and their own arguments are rebound from what that call hands back.

use crate::ast::{ObjectImpl, Target};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{parse_quote, Block, FnArg, Pat, PatType, Signature, Type};

pub fn target(target: Target) -> TokenStream {
    match target {
        Target::Object(object) => object_impl(object),
        Target::Entry(mut entry) => {
            let [(req, req_ty), (env, env_ty)] = take_inputs(&mut entry.sig, 0);
            prepend(
                &mut entry.block,
                quote! {
                    let (#req, #env): (#req_ty, #env_ty) = match ::durafetch_sdk::__private::route_worker_request(
                        __durafetch_in_0, __durafetch_in_1,
                    ).await {
                        ::durafetch_sdk::__private::Routed::Handled(response) => return response,
                        ::durafetch_sdk::__private::Routed::Pass(pass) => pass,
                    };
                },
            );
            quote! { #entry }
        }
    }
}

fn object_impl(mut object: ObjectImpl) -> TokenStream {
    let class = object.class.to_string();
    if let Some(new) = object.method_mut("new") {
        let [(state, state_ty), (env, env_ty)] = take_inputs(&mut new.sig, 0);
        prepend(
            &mut new.block,
            quote! {
                ::durafetch_sdk::__private::install(&__durafetch_in_0, &__durafetch_in_1, #class);
                let #state: #state_ty = __durafetch_in_0;
                let #env: #env_ty = __durafetch_in_1;
            },
        );
    }
    if let Some(fetch) = object.method_mut("fetch") {
        let [(req, req_ty)] = take_inputs(&mut fetch.sig, 1);
        prepend(
            &mut fetch.block,
            quote! {
                let #req: #req_ty = match ::durafetch_sdk::__private::route_object_request(__durafetch_in_1).await {
                    ::durafetch_sdk::__private::Routed::Handled(response) => return response,
                    ::durafetch_sdk::__private::Routed::Pass(request) => request,
                };
            },
        );
    }
    let item = object.item;
    quote! { #item }
}

/// Renames the first `N` typed inputs from position `skip` to `__durafetch_in_<i>` and returns
/// their original patterns and types, to be rebound after durafetch's call.
fn take_inputs<const N: usize>(sig: &mut Signature, skip: usize) -> [(Pat, Type); N] {
    std::array::from_fn(|i| {
        let index = skip + i;
        let Some(FnArg::Typed(PatType { pat, ty, .. })) = sig.inputs.iter_mut().nth(index) else {
            unreachable!("validated: typed input {index}")
        };
        let original = ((**pat).clone(), (**ty).clone());
        let renamed = format_ident!("__durafetch_in_{}", index);
        **pat = parse_quote! { #renamed };
        original
    })
}

fn prepend(block: &mut Block, prologue: TokenStream) {
    let prologue: Block = parse_quote! { { #prologue } };
    block.stmts.splice(0..0, prologue.stmts);
}
