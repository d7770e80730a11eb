//! The `#[durafetch]` attribute, re-exported by `durafetch-sdk`. It goes on
//! `impl DurableObject for YourType` and on the worker's `#[event(fetch)]` function, and only
//! wires calls into the sdk (through its hidden `durafetch_sdk::__private` path); all logic lives there.

mod ast;
mod attr;
mod expand;
mod valid;

use proc_macro::TokenStream;

#[proc_macro_attribute]
pub fn durafetch(args: TokenStream, input: TokenStream) -> TokenStream {
    let input = proc_macro2::TokenStream::from(input);
    attr::no_arguments(args.into())
        .and_then(|()| ast::Target::parse(input.clone()))
        .and_then(|target| valid::check(&target).map(|()| target))
        .map(expand::target)
        .unwrap_or_else(|err| {
            // Keep the item so that the user sees this error, not a cascade about a missing item.
            let err = err.to_compile_error();
            quote::quote! { #err #input }
        })
        .into()
}
